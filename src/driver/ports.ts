import { readFileSync } from "node:fs";
import { badRequest, conflict } from "../errors.ts";
import { formatAddress, tryParseAddress } from "../ipam/prefix.ts";
import { OptionKeys } from "../protocol/wire.ts";
import { bareAddress, type EndpointRecord, type PortBinding } from "../state/model.ts";

const PROTOCOLS: Record<number, PortBinding["proto"]> = { 6: "tcp", 17: "udp", 132: "sctp" };

function port(value: unknown, what: string, allowZero: boolean): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 65535) {
    throw badRequest(`${what} must be a port number from ${allowZero ? 0 : 1} to 65535`);
  }
  if (!allowZero && value === 0) throw badRequest(`${what} must not be 0`);
  return value;
}

/** A binding's host address, parsed and written back canonically ("" for every address). */
function parseHostIp(value: unknown, index: number): string {
  if (value === undefined || value === null || value === "") return "";
  if (typeof value !== "string") throw badRequest(`port map item ${index} HostIP must be a string`);
  const address = tryParseAddress(value);
  if (address === undefined) {
    throw badRequest(`port map item ${index} HostIP "${value}" is not an IP address`);
  }
  return formatAddress(address);
}

/** Decodes `com.docker.network.portmap` (what `-p` asks for) into port bindings. */
export function parsePortBindings(
  options: Record<string, unknown> | null | undefined,
): PortBinding[] {
  const raw = options?.[OptionKeys.portMap];
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw badRequest(`option ${OptionKeys.portMap} must be a list`);
  return raw.map((item: unknown, index) => {
    if (typeof item !== "object" || item === null) {
      throw badRequest(`port map item ${index} must be an object`);
    }
    const entry = item as Record<string, unknown>;
    const proto = PROTOCOLS[entry.Proto as number];
    if (proto === undefined) {
      throw badRequest(
        `port map item ${index} has protocol ${String(entry.Proto)}; expected 6 (tcp), 17 (udp) or 132 (sctp)`,
      );
    }
    const hostIp = parseHostIp(entry.HostIP, index);
    const hostPort = port(entry.HostPort, `port map item ${index} HostPort`, true);
    const hostPortEnd =
      port(entry.HostPortEnd, `port map item ${index} HostPortEnd`, true) || hostPort;
    if (hostPortEnd < hostPort)
      throw badRequest(`port map item ${index} has HostPortEnd below HostPort`);
    return {
      proto,
      containerPort: port(entry.Port, `port map item ${index} Port`, false),
      hostIp,
      hostPort,
      hostPortEnd,
    };
  });
}

/**
 * The range `-p CONTAINERPORT` (no host port) takes from: the kernel's ephemeral range, as
 * Docker's port allocator reads it, else Docker's fallback 49153–65535.
 */
export const EPHEMERAL_PORTS = readEphemeralPorts();

function readEphemeralPorts(): { first: number; last: number } {
  try {
    const [first, last] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
      .trim()
      .split(/\s+/)
      .map(Number);
    if (first !== undefined && last !== undefined && first > 0 && last >= first && last <= 65535) {
      return { first, last };
    }
  } catch {
    // not Linux, or /proc not mounted: use Docker's fallback
  }
  return { first: 49153, last: 65535 };
}

const ANY = new Set(["", "0.0.0.0"]);

/** True when two bindings would need the same host port (same protocol, clashing addresses). */
export function bindingsClash(a: PortBinding, b: PortBinding): boolean {
  if (a.proto !== b.proto) return false;
  if (a.hostPort > b.hostPortEnd || b.hostPort > a.hostPortEnd) return false;
  return ANY.has(a.hostIp) || ANY.has(b.hostIp) || a.hostIp === b.hostIp;
}

/** The host ports to try for a binding, in order: the one given, a range, or the ephemeral range. */
export function candidateHostPorts(binding: PortBinding): number[] {
  const first = binding.hostPort === 0 ? EPHEMERAL_PORTS.first : binding.hostPort;
  const last = binding.hostPort === 0 ? EPHEMERAL_PORTS.last : binding.hostPortEnd;
  const ports: number[] = [];
  for (let port = first; port <= last; port++) ports.push(port);
  return ports;
}

/** How a binding reads in messages and logs: `0.0.0.0:8081->80/tcp`. */
export function describeBinding(binding: PortBinding): string {
  const host = binding.hostIp === "" ? "0.0.0.0" : binding.hostIp;
  const ports =
    binding.hostPortEnd > binding.hostPort
      ? `${binding.hostPort}-${binding.hostPortEnd}`
      : String(binding.hostPort);
  return `${host}:${ports}->${binding.containerPort}/${binding.proto}`;
}

/**
 * The host ports a binding may take, in order, given what the state already holds (pure):
 * every candidate no other endpoint and no earlier binding of this one publishes. A single
 * asked-for port that is held is a Conflict naming its holder.
 */
export function choosePorts(
  endpoints: readonly EndpointRecord[],
  endpointId: string,
  wanted: PortBinding,
  earlier: readonly PortBinding[],
): number[] {
  const candidates = candidateHostPorts(wanted);
  const single = candidates.length === 1;
  const free: number[] = [];
  for (const port of candidates) {
    const binding = { ...wanted, hostPort: port, hostPortEnd: port };
    const holder = endpoints.find(
      (other) =>
        other.id !== endpointId && other.ports.some((taken) => bindingsClash(taken, binding)),
    );
    if (holder !== undefined) {
      if (!single) continue;
      const holderNetwork = holder.networkId.slice(0, 12);
      throw conflict(
        `cannot publish ${describeBinding(binding)}: host port ${port}/${binding.proto} is already published by the container at ${holder.address === undefined ? "(no IPv4)" : bareAddress(holder.address)} on network ${holderNetwork} (endpoint ${holder.id.slice(0, 12)}; see docker network inspect ${holderNetwork})`,
      );
    }
    if (earlier.some((taken) => bindingsClash(taken, binding))) {
      if (!single) continue;
      throw conflict(`cannot publish ${describeBinding(binding)} twice for one container`);
    }
    free.push(port);
  }
  return free;
}

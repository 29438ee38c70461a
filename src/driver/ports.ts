import { badRequest } from "../errors.ts";
import { OptionKeys } from "../protocol/wire.ts";
import type { PortBinding } from "../state/model.ts";

const PROTOCOLS: Record<number, PortBinding["proto"]> = { 6: "tcp", 17: "udp", 132: "sctp" };

function port(value: unknown, what: string, allowZero: boolean): number {
  if (value === undefined || value === null) return 0;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 65535) {
    throw badRequest(`${what} must be a port number from ${allowZero ? 0 : 1} to 65535`);
  }
  if (!allowZero && value === 0) throw badRequest(`${what} must not be 0`);
  return value;
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
    const hostIp = entry.HostIP === undefined || entry.HostIP === null ? "" : String(entry.HostIP);
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

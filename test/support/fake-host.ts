import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { HostFirewall } from "../../src/firewall/host-firewall.ts";
import type {
  EndpointRecord,
  NetworkRecord,
  PortBinding,
  StateDocument,
} from "../../src/state/model.ts";
import { emptyState } from "../../src/state/model.ts";
import { createNamespace, inNamespace, requireRoot } from "./netns.ts";
import { networkRecord } from "./records.ts";

const ip = (...argv: string[]): void => {
  execFileSync("ip", argv);
};

/** Options of a {@link FakeHost}. */
export interface FakeHostOptions {
  /**
   * Whether bridged frames pass the IP hooks (br_netfilter with bridge-nf-call-iptables=1, as
   * Docker leaves it). With false they never do, as on a host without br_netfilter.
   */
  bridgeNetfilter: boolean;
  /**
   * Docker's iptables chains (DOCKER-USER jumped to from FORWARD) and the FORWARD policy.
   * Docker 29 with its nftables backend leaves iptables alone: no chains, policy as it was.
   * Default: chains, policy DROP (Docker's iptables backend).
   */
  iptables?: { dockerChains: boolean; forwardPolicy: "DROP" | "ACCEPT" };
}

/**
 * A Docker host in a throwaway namespace, built with `ip` alone (no driver): FORWARD policy
 * DROP with DOCKER-USER jumped to first, bridges, and "containers" that are namespaces holding
 * one end of a veth. Switchyard's firewall is applied to it from a hand-made state document.
 */
export class FakeHost {
  readonly name: string;
  readonly firewall: HostFirewall;
  readonly state: StateDocument = emptyState();
  readonly #destroyHost: () => void;
  readonly #others: string[] = [];

  constructor(options: FakeHostOptions) {
    requireRoot();
    try {
      execFileSync("sh", ["-c", "command -v sysctl"], { stdio: "ignore" });
    } catch {
      throw new Error("netns firewall tests need sysctl: apt-get install -y procps");
    }
    const host = createNamespace();
    this.name = host.name;
    this.#destroyHost = host.destroy;
    this.firewall = new HostFirewall(host.runner, pino({ level: "silent" }), "nft");
    try {
      this.#dockerLike(options);
    } catch (error) {
      host.destroy();
      throw error;
    }
  }

  #dockerLike(options: FakeHostOptions): void {
    this.sysctl("net.ipv4.ip_forward", "1");
    if (options.bridgeNetfilter) {
      this.sysctl("net.bridge.bridge-nf-call-iptables", "1");
      this.sysctl("net.bridge.bridge-nf-call-ip6tables", "1");
    } else if (this.#hasBridgeNetfilter()) {
      this.sysctl("net.bridge.bridge-nf-call-iptables", "0");
      this.sysctl("net.bridge.bridge-nf-call-ip6tables", "0");
    }
    const iptables = options.iptables ?? { dockerChains: true, forwardPolicy: "DROP" };
    if (iptables.dockerChains) {
      this.iptables("-N", "DOCKER-USER");
      this.iptables("-A", "FORWARD", "-j", "DOCKER-USER");
    }
    this.iptables("-P", "FORWARD", iptables.forwardPolicy);
  }

  /** Sets a sysctl inside the host namespace and checks that it took. */
  sysctl(key: string, value: string): void {
    inNamespace(this.name, ["sysctl", "-qw", `${key}=${value}`]);
    const read = inNamespace(this.name, ["sysctl", "-n", key]).trim();
    if (read !== value)
      throw new Error(`sysctl ${key} is ${read} in ${this.name}, wanted ${value}`);
  }

  #hasBridgeNetfilter(): boolean {
    try {
      inNamespace(this.name, ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]);
      return true;
    } catch {
      return false;
    }
  }

  /** Runs iptables-nft in the host namespace; returns stdout. */
  iptables(...argv: string[]): string {
    return inNamespace(this.name, ["iptables-nft", "-w", ...argv]);
  }

  /** A bridge in the host namespace holding the gateway address (e.g. "10.1.0.1/24"). */
  bridge(name: string, gateway: string): void {
    ip("-n", this.name, "link", "add", name, "type", "bridge");
    ip("-n", this.name, "addr", "add", gateway, "dev", name);
    ip("-n", this.name, "link", "set", name, "up");
  }

  /**
   * Bridge rules as Docker writes them for a network of its own: replies in, everything out
   * of it, and nothing else (the FORWARD policy drops the rest).
   */
  dockerBridge(name: string, gateway: string): void {
    this.bridge(name, gateway);
    this.iptables(
      "-A",
      "FORWARD",
      "-o",
      name,
      "-m",
      "conntrack",
      "--ctstate",
      "RELATED,ESTABLISHED",
      "-j",
      "ACCEPT",
    );
    this.iptables("-A", "FORWARD", "-i", name, "-j", "ACCEPT");
  }

  /**
   * A container: a namespace whose eth0 (address with prefix length) is a veth whose host end
   * (`hostVeth`) is a port of the bridge; default route via the gateway when given.
   */
  container(bridge: string, hostVeth: string, address: string, gateway?: string): string {
    const name = this.#namespaceBehind(`${this.name}-${hostVeth}`, hostVeth);
    ip("-n", this.name, "link", "set", hostVeth, "master", bridge, "up");
    ip("-n", name, "addr", "add", address, "dev", "eth0");
    ip("-n", name, "link", "set", "eth0", "up");
    ip("-n", name, "link", "set", "lo", "up");
    if (gateway !== undefined) ip("-n", name, "route", "add", "default", "via", gateway);
    return name;
  }

  /**
   * An outside host behind a veth uplink (a non-bridge interface): host 10.250.0.1, outside
   * 10.250.0.2, with no route back to container subnets (so only masqueraded traffic returns).
   */
  uplink(options: { bridged?: boolean } = {}): string {
    const name = this.#namespaceBehind(`${this.name}-out`, "uplink");
    // A VM host's uplink is often a bridge (br0, vmbr0) holding the address and default route.
    const device = options.bridged === true ? "br0" : "uplink";
    if (options.bridged === true) {
      ip("-n", this.name, "link", "add", "br0", "type", "bridge");
      ip("-n", this.name, "link", "set", "uplink", "master", "br0");
      ip("-n", this.name, "link", "set", "br0", "up");
    }
    ip("-n", this.name, "addr", "add", "10.250.0.1/24", "dev", device);
    ip("-n", this.name, "link", "set", "uplink", "up");
    ip("-n", this.name, "route", "add", "default", "via", "10.250.0.2", "dev", device);
    ip("-n", name, "addr", "add", "10.250.0.2/24", "dev", "eth0");
    ip("-n", name, "link", "set", "eth0", "up");
    ip("-n", name, "link", "set", "lo", "up");
    return name;
  }

  /** A new namespace whose eth0 is a veth to this host, where its end is named `hostEnd`. */
  #namespaceBehind(name: string, hostEnd: string): string {
    ip("netns", "add", name);
    this.#others.push(name);
    ip(
      "-n",
      this.name,
      "link",
      "add",
      hostEnd,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      name,
    );
    return name;
  }

  /** Records a network in the state (its bridge must exist already). */
  addNetwork(
    id: string,
    bridge: string,
    pool: string,
    extra: Partial<NetworkRecord> = {},
  ): NetworkRecord {
    const record = networkRecord(id, bridge, pool, extra);
    this.state.networks[id] = record;
    return record;
  }

  /** Records an endpoint in the state. */
  addEndpoint(
    id: string,
    networkId: string,
    hostVeth: string,
    address: string,
    ports: PortBinding[] = [],
  ): EndpointRecord {
    const record: EndpointRecord = {
      id,
      networkId,
      hostVeth,
      peerVeth: "eth0",
      mac: "02:42:00:00:00:00",
      address,
      ports,
    };
    this.state.endpoints[id] = record;
    return record;
  }

  /** Applies Switchyard's firewall for the current state. */
  apply(): Promise<void> {
    return this.firewall.apply(this.state);
  }

  destroy(): void {
    for (const name of this.#others.splice(0).reverse()) {
      try {
        ip("netns", "del", name);
      } catch {}
    }
    this.#destroyHost();
  }
}

/** The first line a TCP server at address:port sends, or "" when nothing answers. */
export function fetchLine(namespace: string, address: string, port: number): string {
  try {
    return execFileSync(
      "ip",
      ["netns", "exec", namespace, "busybox", "nc", "-w", "2", address, String(port)],
      { encoding: "utf8", input: "" },
    ).trim();
  } catch {
    return "";
  }
}

/** A short random suffix, so test files running side by side never share a name. */
export const uniqueSuffix = (): string => randomBytes(2).toString("hex");

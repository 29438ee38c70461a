import { internal } from "../errors.ts";
import { CommandError, type CommandResult, type Runner } from "../exec/runner.ts";
import {
  addressBits,
  formatPrefix,
  type IpPrefix,
  networkOf,
  parsePrefix,
  prefixContains,
  tryParseAddress,
  tryParsePrefix,
} from "../ipam/prefix.ts";
import { deleteConntrackEntries } from "./conntrack.ts";
import type {
  BridgeSpec,
  ConntrackFilter,
  Datapath,
  LinkInfo,
  VethSpec,
  VxlanSpec,
} from "./datapath.ts";

interface IpLinkJson {
  ifname: string;
  flags?: string[];
  master?: string;
  mtu?: number;
  address?: string;
  operstate?: string;
  linkinfo?: { info_kind?: string };
}

interface IpAddrJson {
  ifname: string;
  /** `address` is the peer of a point-to-point address; `prefixlen` is then the peer's. */
  addr_info?: { local: string; address?: string; prefixlen: number; family: string }[];
}

interface IpRouteJson {
  /** "default", a CIDR, or a bare address for a host route. */
  dst?: string;
  /** Absent for unicast; "local", "broadcast", "multicast", "unreachable", … */
  type?: string;
}

/**
 * Route types that say nothing about which prefixes are in use: the kernel's broadcast entries
 * and IPv6's multicast route. "local" stays, as an AnyIP route (local 10.88.0.0/16 dev lo)
 * claims a whole prefix; blackhole, unreachable and prohibit routes stay, as a prefix someone
 * routes nowhere is still theirs.
 */
const NOISE_ROUTE_TYPES: ReadonlySet<string> = new Set(["broadcast", "multicast"]);

/** Link-local and multicast prefixes: on every host, and no pool is ever cut from them. */
const NOISE_PREFIXES: readonly IpPrefix[] = ["fe80::/10", "ff00::/8", "224.0.0.0/4"].map(
  parsePrefix,
);

/** A route's or address's text as a network prefix; a bare address is a host prefix. */
function asPrefix(text: string, length?: number): IpPrefix | undefined {
  if (length !== undefined) return tryParsePrefix(`${text}/${length}`);
  if (text.includes("/")) return tryParsePrefix(text);
  const address = tryParseAddress(text);
  return address === undefined
    ? undefined
    : { v6: address.v6, address: address.value, length: addressBits(address.v6) };
}

/**
 * Default routes (/0) would cover every subnet, so they never count as a prefix in use (the
 * IPAM core ignores them too); link-local and multicast prefixes are noise.
 */
function isNoise(prefix: IpPrefix): boolean {
  return prefix.length === 0 || NOISE_PREFIXES.some((noise) => prefixContains(noise, prefix));
}

/** The prefixes `ip -j route` and `ip -j addr` output names, as networks, deduplicated. */
function prefixesInUse(routes: readonly IpRouteJson[], links: readonly IpAddrJson[]): IpPrefix[] {
  const found: (IpPrefix | undefined)[] = [];
  for (const route of routes) {
    if (route.dst === undefined || route.dst === "default") continue;
    if (route.type !== undefined && NOISE_ROUTE_TYPES.has(route.type)) continue;
    found.push(asPrefix(route.dst));
  }
  for (const info of links.flatMap((link) => link.addr_info ?? [])) {
    if (info.address !== undefined && info.address !== info.local) {
      found.push(asPrefix(info.local), asPrefix(info.address, info.prefixlen));
    } else {
      found.push(asPrefix(info.local, info.prefixlen));
    }
  }
  const unique = new Map<string, IpPrefix>();
  for (const prefix of found) {
    if (prefix === undefined || isNoise(prefix)) continue;
    const network = networkOf(prefix);
    unique.set(formatPrefix(network), network);
  }
  return [...unique.values()];
}

/** Parses `ip -j` output; an empty reply (no entries) is an empty list. */
const parseJsonList = <T>(result: CommandResult): T[] =>
  result.stdout.trim() === "" ? [] : (JSON.parse(result.stdout) as T[]);

const isMissing = (error: unknown): boolean =>
  error instanceof CommandError &&
  /Cannot find device|does not exist|No such device/i.test(error.stderr);

function toLinkInfo(entry: IpLinkJson): LinkInfo {
  return {
    name: entry.ifname,
    kind: entry.linkinfo?.info_kind,
    up: entry.flags?.includes("UP") ?? false,
    master: entry.master,
    mtu: entry.mtu ?? 0,
    mac: entry.address,
  };
}

/**
 * A `-batch` script of argv-style commands. Values were parsed before they got here; this
 * refuses any word that could end a command or start another (white space, quotes, `#`,
 * `\\`), so no request string can ever add a command of its own.
 */
export function batchScript(commands: readonly (readonly string[])[]): string {
  for (const command of commands) {
    for (const word of command) {
      if (word === "" || /[\s"'#\\]/.test(word)) {
        throw internal(`refusing to run a command with the word ${JSON.stringify(word)}`);
      }
    }
  }
  return `${commands.map((command) => command.join(" ")).join("\n")}\n`;
}

/** The datapath through iproute2's `ip`, batching commands where it can (one spawn per step). */
export class IpDatapath implements Datapath {
  readonly #run: Runner;

  constructor(runner: Runner) {
    this.#run = runner;
  }

  async link(name: string): Promise<LinkInfo | undefined> {
    try {
      const { stdout } = await this.#run(["ip", "-j", "-d", "link", "show", "dev", name]);
      const [entry] = JSON.parse(stdout) as IpLinkJson[];
      return entry === undefined ? undefined : toLinkInfo(entry);
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async links(): Promise<LinkInfo[]> {
    const { stdout } = await this.#run(["ip", "-j", "-d", "link", "show"]);
    return (JSON.parse(stdout) as IpLinkJson[]).map(toLinkInfo);
  }

  async ensureBridge(spec: BridgeSpec): Promise<void> {
    const existing = await this.link(spec.name);
    if (existing !== undefined && existing.kind !== "bridge") {
      throw internal(
        `cannot create bridge "${spec.name}": an interface of kind ${existing.kind ?? "device"} has that name`,
      );
    }
    const commands: string[][] = [];
    if (existing === undefined) {
      const mac = spec.mac === undefined ? [] : ["address", spec.mac];
      const mtu = spec.mtu === undefined ? [] : ["mtu", String(spec.mtu)];
      commands.push(["link", "add", "name", spec.name, ...mac, ...mtu, "type", "bridge"]);
    } else if (spec.mtu !== undefined && existing.mtu !== spec.mtu) {
      commands.push(["link", "set", "dev", spec.name, "mtu", String(spec.mtu)]);
    }
    const present = existing === undefined ? new Set<string>() : await this.#addresses(spec.name);
    for (const address of spec.addresses) {
      if (present.has(address)) continue;
      // nodad: the gateway must answer at once; a v6 DAD wait would race the first container.
      const extra = address.includes(":") ? ["nodad"] : [];
      commands.push(["address", "add", address, "dev", spec.name, ...extra]);
    }
    commands.push(["link", "set", "dev", spec.name, "up"]);
    await this.#batch(commands);
  }

  async deleteBridge(name: string): Promise<void> {
    await this.deleteLink(name);
  }

  async ensureVeth(spec: VethSpec): Promise<void> {
    const mtu = spec.mtu === undefined ? [] : ["mtu", String(spec.mtu)];
    const master = spec.bridge === undefined ? [] : ["master", spec.bridge, "up"];
    const add = [
      ...["ip", "link", "add", "name", spec.hostName, ...mtu, ...master, "type", "veth"],
      ...["peer", "name", spec.peerName, "address", spec.peerMac, ...mtu],
    ];
    // One command in the usual case (create, attach, up); a leftover pair of the same name is
    // replaced.
    const first = await this.#run(add, { allowFailure: true });
    if (first.exitCode === 0) return;
    if (!/File exists/i.test(first.stderr)) throw new CommandError(add, first);
    await this.deleteLink(spec.hostName);
    await this.deleteLink(spec.peerName);
    await this.#run(add);
  }

  async attach(hostName: string, bridge: string): Promise<void> {
    await this.#batch([["link", "set", "dev", hostName, "master", bridge, "up"]]);
  }

  async deleteLink(name: string): Promise<void> {
    try {
      await this.#run(["ip", "link", "del", "dev", name]);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }

  async ensureVxlan(spec: VxlanSpec): Promise<void> {
    const existing = await this.link(spec.name);
    const mtu = spec.mtu === undefined ? [] : ["mtu", String(spec.mtu)];
    const commands: string[][] = [];
    if (existing !== undefined && existing.kind !== "vxlan") {
      throw internal(
        `cannot create VXLAN device "${spec.name}": an interface of kind ${existing.kind ?? "device"} has that name`,
      );
    }
    if (existing === undefined) {
      // Learning on: remote containers' MACs are learnt from traffic; flood entries (one per
      // peer host) carry broadcasts and the first packets.
      commands.push([
        ...["link", "add", spec.name, "type", "vxlan", "id", String(spec.vni)],
        ...["local", spec.local, "dstport", "4789"],
      ]);
    }
    commands.push(["link", "set", "dev", spec.name, ...mtu, "master", spec.bridge, "up"]);
    await this.#batch(commands);
  }

  async setFloodPeers(device: string, peers: readonly string[]): Promise<void> {
    const { stdout } = await this.#run(["bridge", "-j", "fdb", "show", "dev", device]);
    const entries = JSON.parse(stdout || "[]") as { mac?: string; dst?: string }[];
    const current = new Set(
      entries
        .filter((entry) => entry.mac === "00:00:00:00:00:00" && entry.dst !== undefined)
        .map((entry) => entry.dst),
    );
    const wanted = new Set(peers);
    const commands: string[][] = [];
    for (const peer of wanted) {
      if (!current.has(peer))
        commands.push(["fdb", "append", "00:00:00:00:00:00", "dev", device, "dst", peer]);
    }
    for (const peer of current) {
      if (peer !== undefined && !wanted.has(peer))
        commands.push(["fdb", "del", "00:00:00:00:00:00", "dev", device, "dst", peer]);
    }
    if (commands.length > 0) {
      await this.#run(["bridge", "-batch", "-"], { input: batchScript(commands) });
    }
  }

  async ensureLocalAddress(address: string): Promise<void> {
    if ((await this.#addresses("lo")).has(`${address}/32`)) return;
    await this.#batch([["address", "add", `${address}/32`, "dev", "lo"]]);
  }

  async mtuOfAddress(address: string): Promise<number | undefined> {
    const { stdout } = await this.#run(["ip", "-j", "addr", "show"]);
    const entries = JSON.parse(stdout) as (IpAddrJson & { mtu?: number })[];
    return entries.find((entry) => (entry.addr_info ?? []).some((info) => info.local === address))
      ?.mtu;
  }

  async hostPrefixes(): Promise<IpPrefix[]> {
    const v6Routes = ["ip", "-j", "-6", "route", "show", "table", "all"];
    const [routesV4, routesV6, addresses] = await Promise.all([
      this.#run(["ip", "-j", "-4", "route", "show", "table", "all"]),
      this.#run(v6Routes, { allowFailure: true }),
      this.#run(["ip", "-j", "addr", "show"]),
    ]);
    // A kernel booted without IPv6 refuses the IPv6 dump: it has no IPv6 routes, then.
    const v6Missing = routesV6.exitCode !== 0 && /not supported/i.test(routesV6.stderr);
    if (routesV6.exitCode !== 0 && !v6Missing) throw new CommandError(v6Routes, routesV6);
    const routes = [
      ...parseJsonList<IpRouteJson>(routesV4),
      ...(v6Missing ? [] : parseJsonList<IpRouteJson>(routesV6)),
    ];
    return prefixesInUse(routes, parseJsonList<IpAddrJson>(addresses));
  }

  deleteConntrackEntries(filter: ConntrackFilter): Promise<number> {
    return deleteConntrackEntries(this.#run, filter);
  }

  async #addresses(name: string): Promise<Set<string>> {
    const { stdout } = await this.#run(["ip", "-j", "addr", "show", "dev", name]);
    const entries = JSON.parse(stdout) as IpAddrJson[];
    return new Set(
      entries.flatMap((entry) =>
        (entry.addr_info ?? []).map((info) => `${info.local}/${info.prefixlen}`),
      ),
    );
  }

  /** Runs several `ip` commands in one process (one alone runs as a plain argv). */
  async #batch(commands: string[][]): Promise<void> {
    const [only] = commands;
    if (only === undefined) return;
    if (commands.length === 1) {
      await this.#run(["ip", ...only]);
      return;
    }
    await this.#run(["ip", "-batch", "-"], { input: batchScript(commands) });
  }
}

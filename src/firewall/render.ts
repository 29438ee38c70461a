import { RESOLVER_LIMITS } from "../dns/rate-limit.ts";
import { internal } from "../errors.ts";
import { formatAddress, tryParseAddress } from "../ipam/prefix.ts";
import { macFor, vxlanDeviceName } from "../names.ts";
import {
  bareAddress,
  type EndpointRecord,
  firstGateway,
  type NetworkRecord,
  type StateDocument,
} from "../state/model.ts";

/** Name of Switchyard's nftables table (family inet: one table for IPv4 and IPv6). */
export const NFT_TABLE = "switchyard";
/** The nftables set of Switchyard's bridges. */
const BRIDGE_SET = "bridges";

/** Switchyard's iptables chain, jumped to from Docker's DOCKER-USER chain. */
export const IPTABLES_CHAIN = "SWITCHYARD";

const quote = (name: string): string => `"${name}"`;

function networks(state: Readonly<StateDocument>): NetworkRecord[] {
  return Object.values(state.networks).sort((a, b) => a.bridge.localeCompare(b.bridge));
}

/**
 * Packet-mark bit that Switchyard's nftables forward chain sets on traffic leaving a Switchyard
 * bridge for a Switchyard bridge or for a non-bridge interface (the uplink); the SWITCHYARD
 * iptables chain accepts exactly such traffic, so traffic into anybody else's bridge (docker0,
 * br-*, custom-named bridges, docker_gwbridge, ...) is left to Docker's chains. Bit 28 keeps
 * clear of the marks others are known to use: kube-proxy 0x4000/0x8000, netavark 0x2000,
 * Cilium 0xf00, Tailscale 0xff0000, Docker's swarm load balancer small values from 0x100
 * (Calico's default mask 0xffff0000 does include it). Only this bit is ever set, cleared or
 * matched (always masked); other bits pass untouched.
 */
export const FORWARD_MARK = 0x10000000;

const hex = (value: number): string => `0x${value.toString(16).padStart(8, "0")}`;

/**
 * First in the forward chain: set {@link FORWARD_MARK} on everything that leaves a Switchyard
 * bridge, then clear it again when the output is a bridge that is not Switchyard's. Set-then-
 * clear rather than `meta oifkind != "bridge"`: a physical NIC has no kind (no rtnl_link_ops),
 * and on such a device any `meta oifkind` comparison fails to match, so the uplink of most
 * hosts would never be marked.
 */
function markRules(): string[] {
  const others = ~FORWARD_MARK >>> 0;
  return [
    `iifname @${BRIDGE_SET} meta mark set meta mark | ${hex(FORWARD_MARK)} comment "leaves a Switchyard bridge"`,
    `iifname @${BRIDGE_SET} oifname != @${BRIDGE_SET} oifname != @${UPLINK_SET} meta oifkind "bridge" meta mark set meta mark & ${hex(others)} comment "into another bridge: Docker decides"`,
  ];
}

/** The nftables set of the host's uplinks (the interfaces of its default routes). */
const UPLINK_SET = "uplinks";

function uplinkDeclaration(capabilities: NftCapabilities): string[] {
  const uplinks = capabilities.uplinks ?? [];
  return [
    `  set ${UPLINK_SET} {`,
    "    type ifname;",
    ...(uplinks.length === 0 ? [] : [`    elements = { ${uplinks.map(quote).join(", ")} }`]),
    "  }",
  ];
}

/**
 * Drops come before every accept of every network: an accept ends the chain, so another
 * network's "published port" accept must never get to see a packet an internal network or
 * ICC=false has to drop.
 */
function dropRules(network: NetworkRecord): string[] {
  const bridge = quote(network.bridge);
  const rules: string[] = [];
  // Routed traffic (and, with br_netfilter, bridged traffic); bridged traffic without
  // br_netfilter is dropped in the bridge table (bridgeIccRules).
  if (!network.icc) rules.push(`iifname ${bridge} oifname ${bridge} drop comment "icc off"`);
  if (network.internal) {
    rules.push(`iifname ${bridge} oifname != ${bridge} drop comment "internal"`);
    rules.push(`oifname ${bridge} iifname != ${bridge} drop comment "internal"`);
  }
  return rules;
}

function admissionRules(network: NetworkRecord): string[] {
  if (network.internal) return [];
  const bridge = quote(network.bridge);
  // Into the network from elsewhere: replies and published ports (DNAT'ed) only, as Docker's
  // bridge does. A container's own address is not reachable from outside, not even on a
  // port it publishes (Docker 28's protection, adopted on every Docker version).
  return [
    `oifname ${bridge} iifname != ${bridge} ct state established,related accept`,
    `oifname ${bridge} iifname != ${bridge} ct status dnat accept`,
    `oifname ${bridge} iifname != ${bridge} drop comment "isolation"`,
  ];
}

/**
 * Before connection tracking (raw priority), as Docker 28 does: packets addressed to a
 * container that arrive other than through its own bridge are dropped, so no other interface
 * (another host routing through this one, another container network) reaches a container
 * directly, and replies to unmasqueraded traffic do not come back in. DNAT'ed traffic still
 * carries the host's address here and is not affected.
 */
function directAccessRules(network: NetworkRecord, endpoints: EndpointRecord[]): string[] {
  const bridge = quote(network.bridge);
  const rules: string[] = [];
  for (const [family, addressing, endpointAddress] of [
    ["ip", network.ipv4, (endpoint: EndpointRecord) => endpoint.address],
    ["ip6", network.ipv6, (endpoint: EndpointRecord) => endpoint.addressV6],
  ] as const) {
    if (network.bridgeOwned) {
      // Switchyard's own bridge holds only containers: the whole subnet but its gateway, so
      // the rule does not change with every container.
      for (const item of addressing) {
        const except =
          item.gateway === undefined ? "" : ` ${family} daddr != ${bareAddress(item.gateway)}`;
        rules.push(
          `iifname != ${bridge} ${family} daddr ${item.pool}${except} drop comment "no direct access"`,
        );
      }
      continue;
    }
    // A bridge the user made may hold more than containers: only the containers' addresses.
    const addresses = endpoints.flatMap((endpoint) => {
      const address = endpoint.networkId === network.id ? endpointAddress(endpoint) : undefined;
      return address === undefined ? [] : [bareAddress(address)];
    });
    if (addresses.length > 0)
      rules.push(
        `iifname != ${bridge} ${family} daddr { ${addresses.join(", ")} } drop comment "no direct access"`,
      );
  }
  return rules;
}

function masqueradeRules(network: NetworkRecord): string[] {
  if (network.internal || !network.masquerade) return [];
  return network.ipv4.map(
    (item) => `ip saddr ${item.pool} oifname != ${quote(network.bridge)} masquerade`,
  );
}

/** What the host's nftables can match, as far as the rendering depends on it. */
export interface NftCapabilities {
  /** `meta ibrname`/`meta obrname` in the bridge family (kernel CONFIG_NFT_BRIDGE_META). */
  bridgeMeta: boolean;
  /**
   * Interfaces holding the host's default routes. Often a bridge itself (br0, vmbr0 on VM
   * hosts): traffic out through one is outbound traffic, not traffic into another container
   * network, so it keeps the mark that lets it past Docker's FORWARD DROP.
   */
  uplinks?: readonly string[];
}

/** What the nftables script is rendered from besides the state. */
export interface NftRenderOptions extends NftCapabilities {
  /**
   * The address of Switchyard's name resolver (`DNS_ADDRESS`, IPv4) when it runs: its port 53
   * then takes packets only from this host's containers and the host itself.
   */
  resolverAddress?: string;
}

/**
 * ICC=false for bridged traffic, in the bridge family's forward hook, which sees every frame
 * one port of a bridge sends to another whether or not br_netfilter is loaded. IPv4 and IPv6
 * only: ARP stays, as with Docker. Without the kernel's bridge meta expression the bridge
 * cannot be named, so the network is told by its addresses instead: frames between two ports
 * from or to its pools. That misses what carries no such address (IPv6 link-local, or a
 * forged source sent to a non-pool destination), which only the bridge name catches.
 */
function bridgeIccRules(network: NetworkRecord, capabilities: NftCapabilities): string[] {
  if (network.icc) return [];
  if (capabilities.bridgeMeta) {
    const bridge = quote(network.bridge);
    return [
      `meta ibrname ${bridge} meta obrname ${bridge} meta protocol { ip, ip6 } drop comment "icc off"`,
    ];
  }
  const pools = [
    ...network.ipv4.map((item) => ["ip", item.pool] as const),
    ...network.ipv6.map((item) => ["ip6", item.pool] as const),
  ];
  return pools.flatMap(([family, pool]) => [
    `${family} saddr ${pool} drop comment "icc off"`,
    `${family} daddr ${pool} drop comment "icc off"`,
  ]);
}

/**
 * The whole nftables script for the state: deletes and re-creates Switchyard's tables in one
 * transaction, so the kernel never holds a half-applied ruleset. Empty state → tables removed
 * (but for the resolver's guard, when `resolverAddress` is given).
 * Published ports are elements of named sets and maps, so that publishing or revoking one
 * changes elements ({@link renderPublishedUpdate}) instead of rebuilding every rule.
 */
export function renderNftables(
  state: Readonly<StateDocument>,
  capabilities: NftRenderOptions = { bridgeMeta: true },
): string {
  return renderTables(state, capabilities, publishedElements(state));
}

/**
 * The script without any published port: what has to stay the same for a change to be made
 * with {@link renderPublishedUpdate} alone (anything else is a full rebuild).
 */
export function renderNftStructure(
  state: Readonly<StateDocument>,
  capabilities: NftRenderOptions = { bridgeMeta: true },
): string {
  return renderTables(state, capabilities, undefined);
}

function renderTables(
  state: Readonly<StateDocument>,
  capabilities: NftRenderOptions,
  published: PublishedElements | undefined,
): string {
  const all = networks(state);
  const lines = [
    `table inet ${NFT_TABLE} {}`,
    `delete table inet ${NFT_TABLE}`,
    `table bridge ${NFT_TABLE} {}`,
    `delete table bridge ${NFT_TABLE}`,
  ];
  if (all.length === 0) {
    // No network yet, but the resolver already listens (a multi-host host before its first
    // network): its address is guarded all the same, nothing else is in the table.
    if (capabilities.resolverAddress !== undefined) {
      lines.push(
        `table inet ${NFT_TABLE} {`,
        ...uplinkDeclaration(capabilities),
        ...resolverRules(all, capabilities),
        "}",
      );
    }
    return `${lines.join("\n")}\n`;
  }
  const endpoints = Object.values(state.endpoints);
  const indent = (rules: string[]): string[] => rules.map((rule) => `    ${rule}`);
  lines.push(
    `table inet ${NFT_TABLE} {`,
    `  set ${BRIDGE_SET} {`,
    "    type ifname;",
    `    elements = { ${all.map((network) => quote(network.bridge)).join(", ")} }`,
    "  }",
    ...uplinkDeclaration(capabilities),
    ...vxlanPeerRules(state, all),
    ...resolverRules(all, capabilities),
    ...publishedDeclarations(published),
    "  chain forward {",
    "    type filter hook forward priority -10; policy accept;",
    ...indent(markRules()),
    ...indent(all.flatMap(dropRules)),
    ...indent(all.flatMap(admissionRules)),
    "  }",
    "  chain raw_prerouting {",
    "    type filter hook prerouting priority -300; policy accept;",
    ...indent(all.flatMap((network) => directAccessRules(network, endpoints))),
    "  }",
    "  chain prerouting {",
    "    type nat hook prerouting priority -100; policy accept;",
    ...indent(publishedDnatRules("prerouting")),
    "  }",
    "  chain output {",
    "    type nat hook output priority -100; policy accept;",
    ...indent(publishedDnatRules("output")),
    "  }",
    "  chain postrouting {",
    "    type nat hook postrouting priority 100; policy accept;",
    ...indent(all.flatMap(masqueradeRules)),
    "  }",
    "}",
  );
  const bridgeForward = all.flatMap((network) => [
    ...bridgeIccRules(network, capabilities),
    ...gatewayForwardRules(network),
  ]);
  const bridgeOutput = all.flatMap(gatewayOutputRules);
  if (bridgeForward.length > 0 || bridgeOutput.length > 0) {
    lines.push(`table bridge ${NFT_TABLE} {`);
    if (bridgeForward.length > 0) {
      lines.push(
        "  chain forward {",
        "    type filter hook forward priority -10; policy accept;",
        ...indent(bridgeForward),
        "  }",
      );
    }
    if (bridgeOutput.length > 0) {
      lines.push(
        "  chain output {",
        "    type filter hook output priority -10; policy accept;",
        ...indent(bridgeOutput),
        "  }",
      );
    }
    lines.push("}");
  }
  return `${lines.join("\n")}\n`;
}

/**
 * VXLAN (UDP 4789) of Switchyard's networks is taken only from the registered peer hosts of
 * this host's multi-host networks: anyone else could otherwise inject frames into a network's
 * bridge. Only Switchyard's own VNIs are matched (the VXLAN header's 24-bit VNI, 32 bits into
 * the UDP payload: `@th,96,24` from the start of the UDP header), so VXLAN of other VNIs on
 * the same port (Docker swarm's overlay, Calico, Flannel) passes untouched. Peers come from
 * etcd, so each is parsed as an address before it goes into the script.
 */
function vxlanPeerRules(state: Readonly<StateDocument>, all: NetworkRecord[]): string[] {
  const vnis = [
    ...new Set(all.flatMap((network) => (network.vxlanId === undefined ? [] : [network.vxlanId]))),
  ].sort((a, b) => a - b);
  if (vnis.length === 0) return [];
  const peers = new Set<string>();
  for (const network of Object.values(state.cluster?.networks ?? {})) {
    for (const peer of network.peers) {
      const address = tryParseAddress(peer);
      if (address !== undefined && !address.v6) peers.add(formatAddress(address));
    }
  }
  return [
    `  set ${VXLAN_PEER_SET} {`,
    "    type ipv4_addr;",
    ...(peers.size === 0 ? [] : [`    elements = { ${[...peers].sort().join(", ")} }`]),
    "  }",
    "  chain vxlan_input {",
    "    type filter hook input priority -1; policy accept;",
    `    udp dport 4789 @th,96,24 { ${vnis.join(", ")} } ip saddr != @${VXLAN_PEER_SET} drop comment "Switchyard's VXLAN only from peer hosts"`,
    "  }",
  ];
}

/** The nftables set of the underlay addresses of this host's multi-host peers. */
const VXLAN_PEER_SET = "vxlan_peers";

/** The nftables set metering each client of the resolver (a dynamic set of source addresses). */
const RESOLVER_FLOOD_SET = "resolver_flood";
/**
 * The packet filter's own limit per client of the resolver, UDP only (TCP has the resolver's
 * connection caps): twice what the resolver answers one source, so a client within that never
 * meets this one, while a flood is cut in the kernel instead of costing the plugin's event
 * loop about 12 µs a packet to receive and drop. As many clients are metered as the resolver
 * keeps buckets for, each forgotten after a minute of silence; past that a new source goes
 * unmetered here (the resolver's buckets still hold).
 */
const RESOLVER_FLOOD_RATE = 2 * RESOLVER_LIMITS.perSourceRate;
const RESOLVER_FLOOD_BURST = 2 * RESOLVER_LIMITS.perSourceBurst;
const RESOLVER_FLOOD_SIZE = RESOLVER_LIMITS.maxSources;

/**
 * The resolver's address (on `lo`) answers only this host: the host itself (`lo`), the
 * containers of this host's multi-host networks from their own bridge, and those of any other
 * container network of the host (a bridge or a veth that is not an uplink). A packet to it
 * from anywhere else (the LAN, through an uplink or any other interface; a forged container
 * address from outside) is dropped. The other container networks are let through on purpose:
 * the `dns` setting is daemon-wide, so every container of the host asks this resolver first,
 * and only a reply (REFUSED) sends it on to its next server at once; a drop would make it wait
 * out its timeout (4 s in Docker, 5 s in glibc) on every lookup.
 */
function resolverRules(all: NetworkRecord[], options: NftRenderOptions): string[] {
  if (options.resolverAddress === undefined) return [];
  const parsed = tryParseAddress(options.resolverAddress);
  if (parsed === undefined || parsed.v6) {
    throw internal(
      `cannot render the resolver's packet filter: "${options.resolverAddress}" is not an IPv4 address`,
    );
  }
  const to = `ip daddr ${formatAddress(parsed)}`;
  const multiHost = all.flatMap((network) =>
    network.vxlanId === undefined
      ? []
      : network.ipv4.map(
          (item) =>
            `    iifname ${quote(network.bridge)} ip saddr ${item.pool} return comment "a multi-host network's containers"`,
        ),
  );
  return [
    `  set ${RESOLVER_FLOOD_SET} {`,
    "    type ipv4_addr;",
    `    size ${RESOLVER_FLOOD_SIZE};`,
    "    flags dynamic,timeout;",
    "    timeout 1m;",
    "  }",
    "  chain resolver_input {",
    "    type filter hook input priority -1; policy accept;",
    `    ${to} meta l4proto { tcp, udp } th dport 53 jump resolver_clients`,
    `    ${to} udp dport 53 iifname != "lo" update @${RESOLVER_FLOOD_SET} { ip saddr limit rate over ${RESOLVER_FLOOD_RATE}/second burst ${RESOLVER_FLOOD_BURST} packets } drop comment "a flood from one client"`,
    "  }",
    "  chain resolver_clients {",
    '    iifname "lo" return comment "the host itself"',
    ...multiHost,
    `    iifname != @${UPLINK_SET} meta iifkind { "bridge", "veth" } return comment "another container network: refused by the resolver, at once"`,
    `    drop comment "the resolver answers only this host's containers"`,
    "  }",
  ];
}
// ---------------------------------------------------------------------------------------------
// Published ports (`-p`) as set and map elements. The rules that use them are fixed; what an
// endpoint publishes is elements only, so publishing or revoking is one small transaction
// whatever the host holds, and the kernel finds a port by lookup, not by walking a rule each.

/** Host port (any local address) → container address and port: `tcp . 8081 : 10.1.0.2 . 80`. */
const PUBLISHED = "published";
/** The same for bindings to one host address: `10.0.0.5 . tcp . 8081 : 10.1.0.2 . 80`. */
const PUBLISHED_ADDR = "published_addr";
/**
 * The bridge of each published port: traffic from the publishing network's own bridge is left
 * to the plugin's relay (which reaches the container from the gateway, as Docker's userland
 * proxy does), so prerouting does not DNAT it.
 */
const PUBLISHED_OWN = "published_own";
const PUBLISHED_ADDR_OWN = "published_addr_own";

const PUBLISHED_TYPES: Record<string, string> = {
  [PUBLISHED]: "map { type inet_proto . inet_service : ipv4_addr . inet_service;",
  [PUBLISHED_ADDR]: "map { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
  [PUBLISHED_OWN]: "set { type ifname . inet_proto . inet_service;",
  [PUBLISHED_ADDR_OWN]: "set { type ifname . ipv4_addr . inet_proto . inet_service;",
};

/** Each published set or map: element key → the element as nft writes it (with its value). */
export type PublishedElements = Record<string, Map<string, string>>;

/**
 * The elements for the state's published ports, in endpoint order (the first binding of a key
 * wins, as the first of two rules would). Internal networks publish nothing. DNAT is IPv4, as
 * Docker does it; loopback and IPv6 bindings are served by the plugin's local relay only. The
 * relay speaks TCP and UDP only, so for SCTP the kernel's DNAT is all there is: an SCTP
 * binding on a loopback address, and SCTP from the network's own containers or to 127.0.0.1,
 * stays unserved.
 */
export function publishedElements(state: Readonly<StateDocument>): PublishedElements {
  const elements: PublishedElements = {};
  for (const name of Object.keys(PUBLISHED_TYPES)) elements[name] = new Map();
  const add = (name: string, key: string, value?: string): void => {
    const set = elements[name] as Map<string, string>;
    if (!set.has(key)) set.set(key, value === undefined ? key : `${key} : ${value}`);
  };
  // Code-unit order, not localeCompare: IDs are hex, and this runs at every apply.
  const endpoints = Object.values(state.endpoints)
    .filter((endpoint) => endpoint.ports.length > 0)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const endpoint of endpoints) {
    const network = state.networks[endpoint.networkId];
    if (network === undefined || network.internal || endpoint.address === undefined) continue;
    const address = bareAddress(endpoint.address);
    const bridge = quote(network.bridge);
    for (const binding of endpoint.ports) {
      const target = `${address} . ${binding.containerPort}`;
      const hostIp = binding.hostIp;
      if (binding.hostPort === 0 || hostIp.includes(":") || hostIp.startsWith("127.")) continue;
      const anyAddress = hostIp === "" || hostIp === "0.0.0.0";
      for (
        let port = binding.hostPort;
        port <= Math.max(binding.hostPort, binding.hostPortEnd);
        port++
      ) {
        const service = `${binding.proto} . ${port}`;
        if (anyAddress) {
          add(PUBLISHED, service, target);
          add(PUBLISHED_OWN, `${bridge} . ${service}`);
        } else {
          add(PUBLISHED_ADDR, `${hostIp} . ${service}`, target);
          add(PUBLISHED_ADDR_OWN, `${bridge} . ${hostIp} . ${service}`);
        }
      }
    }
  }
  return elements;
}

/** The declarations of the published sets and maps, with their elements when given. */
function publishedDeclarations(published: PublishedElements | undefined): string[] {
  return Object.entries(PUBLISHED_TYPES).flatMap(([name, type]) => {
    const [kind, declaration] = type.split(" { ") as [string, string];
    const items = [...(published?.[name]?.values() ?? [])];
    return [
      `  ${kind} ${name} {`,
      `    ${declaration}`,
      ...(items.length === 0 ? [] : [`    elements = { ${items.join(", ")} }`]),
      "  }",
    ];
  });
}

/**
 * DNAT for published ports, as Docker does it: traffic arriving from elsewhere (prerouting)
 * and the host's own traffic to its non-loopback addresses (output).
 */
function publishedDnatRules(hook: "prerouting" | "output"): string[] {
  const any = "meta l4proto . th dport";
  const one = "ip daddr . meta l4proto . th dport";
  if (hook === "prerouting") {
    return [
      `meta nfproto ipv4 fib daddr type local iifname . ${any} != @${PUBLISHED_OWN} dnat ip to ${any} map @${PUBLISHED}`,
      `iifname . ${one} != @${PUBLISHED_ADDR_OWN} dnat ip to ${one} map @${PUBLISHED_ADDR}`,
    ];
  }
  return [
    `ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to ${any} map @${PUBLISHED}`,
    `ip daddr != 127.0.0.0/8 dnat ip to ${one} map @${PUBLISHED_ADDR}`,
  ];
}

/**
 * One transaction taking the published elements from `before` to `after` (removals first, so
 * a key whose value changed is replaced), or "" when they are the same.
 */
export function renderPublishedUpdate(before: PublishedElements, after: PublishedElements): string {
  const deletes: string[] = [];
  const adds: string[] = [];
  for (const name of Object.keys(PUBLISHED_TYPES)) {
    const old = before[name] ?? new Map<string, string>();
    const now = after[name] ?? new Map<string, string>();
    const gone = [...old].filter(([key, element]) => now.get(key) !== element).map(([key]) => key);
    const added = [...now].filter(([key, element]) => old.get(key) !== element).map(([, e]) => e);
    if (gone.length > 0)
      deletes.push(`delete element inet ${NFT_TABLE} ${name} { ${gone.join(", ")} }`);
    if (added.length > 0)
      adds.push(`add element inet ${NFT_TABLE} ${name} { ${added.join(", ")} }`);
  }
  const lines = [...deletes, ...adds];
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}

/** The gateway of a multi-host network (same address and MAC on every host) and its VXLAN device. */
function gatewayOf(
  network: NetworkRecord,
): { device: string; address: string; mac: string } | undefined {
  const gateway = firstGateway(network.ipv4);
  if (network.vxlanId === undefined || gateway === undefined) return undefined;
  return {
    device: quote(vxlanDeviceName(network.vxlanId)),
    address: bareAddress(gateway),
    mac: macFor(network.id, gateway),
  };
}

/**
 * Each host answers for the gateway itself: ARP for the gateway address never crosses the
 * VXLAN device, and nothing from another host's gateway MAC is let in.
 */
function gatewayForwardRules(network: NetworkRecord): string[] {
  const gateway = gatewayOf(network);
  if (gateway === undefined) return [];
  return [
    `oifname ${gateway.device} arp daddr ip ${gateway.address} drop comment "gateway stays local"`,
    `iifname ${gateway.device} arp daddr ip ${gateway.address} drop comment "gateway stays local"`,
    `iifname ${gateway.device} ether saddr ${gateway.mac} drop comment "gateway stays local"`,
  ];
}

function gatewayOutputRules(network: NetworkRecord): string[] {
  const gateway = gatewayOf(network);
  if (gateway === undefined) return [];
  return [
    `oifname ${gateway.device} ether saddr ${gateway.mac} drop comment "gateway stays local"`,
  ];
}

/**
 * Switchyard's iptables chain (an `iptables-restore --noflush` script). Docker's FORWARD
 * policy is DROP and an nftables accept cannot override another table's drop, so traffic of
 * Switchyard's bridges is accepted here, in front of Docker's chains; the filtering itself
 * (isolation, ICC, internal) happens in Switchyard's nftables table, where a drop is final.
 * Traffic leaving a Switchyard bridge is accepted only when the nftables forward chain marked
 * it (to a Switchyard bridge or a non-bridge interface): into any other bridge it returns to
 * Docker's chains, which decide as between two of Docker's own networks, whatever that
 * bridge's name.
 */
export function renderIptables(state: Readonly<StateDocument>): string {
  const all = networks(state);
  const lines = ["*filter", `:${IPTABLES_CHAIN} - [0:0]`, `-F ${IPTABLES_CHAIN}`];
  for (const network of all) lines.push(`-A ${IPTABLES_CHAIN} -o ${network.bridge} -j ACCEPT`);
  const mark = `${hex(FORWARD_MARK)}/${hex(FORWARD_MARK)}`;
  for (const network of all)
    lines.push(`-A ${IPTABLES_CHAIN} -i ${network.bridge} -m mark --mark ${mark} -j ACCEPT`);
  lines.push("COMMIT");
  return `${lines.join("\n")}\n`;
}

import {
  bareAddress,
  type EndpointRecord,
  type NetworkRecord,
  type StateDocument,
} from "../state/model.ts";
import {
  BRIDGE_SET,
  FORWARD_MARK,
  hex,
  NFT_TABLE,
  networksByBridge,
  quote,
  UPLINK_SET,
} from "./render-names.ts";
import { gatewayForwardRules, gatewayOutputRules, vxlanPeerRules } from "./render-overlay.ts";
import {
  type PublishedElements,
  publishedDeclarations,
  publishedDnatRules,
  publishedElements,
} from "./render-published.ts";
import { resolverRules } from "./render-resolver.ts";

// The nftables ruleset: the inet table (isolation, ICC, internal, direct access, published
// ports' DNAT, masquerade, and the guards of render-resolver.ts and render-overlay.ts) and the
// bridge table (bridged ICC=false, the multi-host gateway), rebuilt in one transaction.

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
  const all = networksByBridge(state);
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
        ...resolverRules(all, capabilities.resolverAddress),
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
    ...resolverRules(all, capabilities.resolverAddress),
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

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

function forwardRules(network: NetworkRecord, endpoints: EndpointRecord[]): string[] {
  const bridge = quote(network.bridge);
  const rules: string[] = [];
  if (!network.icc) rules.push(`iifname ${bridge} oifname ${bridge} drop comment "icc off"`);
  if (network.internal) {
    rules.push(`iifname ${bridge} oifname != ${bridge} drop comment "internal"`);
    rules.push(`oifname ${bridge} iifname != ${bridge} drop comment "internal"`);
    return rules;
  }
  // Into the network from elsewhere: replies and published ports only, as Docker's bridge
  // does. Like Docker it also lets a published container port be reached at the container's
  // own address, but not from other container networks (Docker's isolation chains drop that).
  rules.push(`oifname ${bridge} iifname != ${bridge} ct state established,related accept`);
  rules.push(`oifname ${bridge} iifname != ${bridge} ct status dnat accept`);
  const notFromContainers = `iifname != @${BRIDGE_SET} iifname != "docker0" iifname != "br-*"`;
  for (const endpoint of endpoints) {
    if (endpoint.networkId !== network.id || endpoint.address === undefined) continue;
    for (const binding of endpoint.ports) {
      rules.push(
        `oifname ${bridge} ${notFromContainers} ip daddr ${bareAddress(endpoint.address)} ${binding.proto} dport ${binding.containerPort} accept`,
      );
    }
  }
  rules.push(`oifname ${bridge} iifname != ${bridge} drop comment "isolation"`);
  return rules;
}

function masqueradeRules(network: NetworkRecord): string[] {
  if (network.internal || !network.masquerade) return [];
  return network.ipv4.map(
    (item) => `ip saddr ${item.pool} oifname != ${quote(network.bridge)} masquerade`,
  );
}

/**
 * DNAT for published ports, as Docker does it: traffic arriving from elsewhere (prerouting)
 * and the host's own traffic to its non-loopback addresses (output). Traffic from the
 * network's own bridge and to 127.0.0.1 is left to the plugin's relay, which reaches the
 * container from the gateway, as Docker's userland proxy does.
 */
function publishRules(
  network: NetworkRecord,
  endpoint: EndpointRecord,
  hook: "prerouting" | "output",
): string[] {
  if (network.internal || endpoint.address === undefined) return [];
  const from =
    hook === "prerouting" ? `iifname != ${quote(network.bridge)}` : "ip daddr != 127.0.0.0/8";
  return endpoint.ports
    .filter((binding) => binding.hostPort !== 0 && binding.proto !== "sctp")
    .flatMap((binding) => {
      const hostIp = binding.hostIp;
      // Loopback and IPv6 bindings are served by the plugin's local relay only.
      if (hostIp.includes(":") || hostIp.startsWith("127.")) return [];
      const match =
        hostIp === "" || hostIp === "0.0.0.0" ? "fib daddr type local" : `ip daddr ${hostIp}`;
      const ports =
        binding.hostPortEnd > binding.hostPort
          ? `${binding.hostPort}-${binding.hostPortEnd}`
          : String(binding.hostPort);
      return [
        `${from} ${match} ${binding.proto} dport ${ports} dnat ip to ${bareAddress(endpoint.address ?? "")}:${binding.containerPort}`,
      ];
    });
}

/**
 * The whole nftables script for the state: deletes and re-creates Switchyard's table in one
 * transaction, so the kernel never holds a half-applied ruleset. Empty state → table removed.
 */
export function renderNftables(state: Readonly<StateDocument>): string {
  const all = networks(state);
  const lines = [
    `table inet ${NFT_TABLE} {}`,
    `delete table inet ${NFT_TABLE}`,
    `table bridge ${NFT_TABLE} {}`,
    `delete table bridge ${NFT_TABLE}`,
  ];
  if (all.length === 0) return `${lines.join("\n")}\n`;
  const endpoints = Object.values(state.endpoints).sort((a, b) => a.id.localeCompare(b.id));
  const publish = (hook: "prerouting" | "output") =>
    endpoints.flatMap((endpoint) => {
      const network = state.networks[endpoint.networkId];
      return network === undefined ? [] : publishRules(network, endpoint, hook);
    });
  const indent = (rules: string[]): string[] => rules.map((rule) => `    ${rule}`);
  lines.push(
    `table inet ${NFT_TABLE} {`,
    `  set ${BRIDGE_SET} {`,
    "    type ifname;",
    `    elements = { ${all.map((network) => quote(network.bridge)).join(", ")} }`,
    "  }",
    "  chain forward {",
    "    type filter hook forward priority -10; policy accept;",
    ...indent(all.flatMap((network) => forwardRules(network, endpoints))),
    "  }",
    "  chain prerouting {",
    "    type nat hook prerouting priority -100; policy accept;",
    ...indent(publish("prerouting")),
    "  }",
    "  chain output {",
    "    type nat hook output priority -100; policy accept;",
    ...indent(publish("output")),
    "  }",
    "  chain postrouting {",
    "    type nat hook postrouting priority 100; policy accept;",
    ...indent(all.flatMap(masqueradeRules)),
    "  }",
    "}",
  );
  const multiHost = all.filter((network) => network.vxlanId !== undefined);
  if (multiHost.length > 0) {
    lines.push(
      `table bridge ${NFT_TABLE} {`,
      "  chain forward {",
      "    type filter hook forward priority -10; policy accept;",
      ...indent(multiHost.flatMap(gatewayForwardRules)),
      "  }",
      "  chain output {",
      "    type filter hook output priority -10; policy accept;",
      ...indent(multiHost.flatMap(gatewayOutputRules)),
      "  }",
      "}",
    );
  }
  return `${lines.join("\n")}\n`;
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
 */
export function renderIptables(state: Readonly<StateDocument>): string {
  const all = networks(state);
  const lines = ["*filter", `:${IPTABLES_CHAIN} - [0:0]`, `-F ${IPTABLES_CHAIN}`];
  for (const network of all) lines.push(`-A ${IPTABLES_CHAIN} -o ${network.bridge} -j ACCEPT`);
  // Traffic into Docker's own bridges stays Docker's decision (it only lets replies and
  // published ports in), as between two built-in bridge networks.
  lines.push(`-A ${IPTABLES_CHAIN} -o docker0 -j RETURN`, `-A ${IPTABLES_CHAIN} -o br-+ -j RETURN`);
  for (const network of all) lines.push(`-A ${IPTABLES_CHAIN} -i ${network.bridge} -j ACCEPT`);
  lines.push("COMMIT");
  return `${lines.join("\n")}\n`;
}

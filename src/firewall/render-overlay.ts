import { formatAddress, tryParseAddress } from "../ipam/prefix.ts";
import { macFor, vxlanDeviceName } from "../names.ts";
import {
  bareAddress,
  firstGateway,
  type NetworkRecord,
  type StateDocument,
} from "../state/model.ts";
import { quote } from "./render-names.ts";

// The nftables rules of multi-host (VXLAN) networks: VXLAN only from the peer hosts, in the
// inet table's input hook, and each host's gateway kept local, in the bridge table.

/** The nftables set of the underlay addresses of this host's multi-host peers. */
const VXLAN_PEER_SET = "vxlan_peers";

/**
 * VXLAN (UDP 4789) of Switchyard's networks is taken only from the registered peer hosts of
 * this host's multi-host networks: anyone else could otherwise inject frames into a network's
 * bridge. Only Switchyard's own VNIs are matched (the VXLAN header's 24-bit VNI, 32 bits into
 * the UDP payload: `@th,96,24` from the start of the UDP header), so VXLAN of other VNIs on
 * the same port (Docker swarm's overlay, Calico, Flannel) passes untouched. Peers come from
 * etcd, so each is parsed as an address before it goes into the script.
 */
export function vxlanPeerRules(state: Readonly<StateDocument>, all: NetworkRecord[]): string[] {
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
export function gatewayForwardRules(network: NetworkRecord): string[] {
  const gateway = gatewayOf(network);
  if (gateway === undefined) return [];
  return [
    `oifname ${gateway.device} arp daddr ip ${gateway.address} drop comment "gateway stays local"`,
    `iifname ${gateway.device} arp daddr ip ${gateway.address} drop comment "gateway stays local"`,
    `iifname ${gateway.device} ether saddr ${gateway.mac} drop comment "gateway stays local"`,
  ];
}

/** The same for the host's own frames: none leaves by the VXLAN device with the gateway MAC. */
export function gatewayOutputRules(network: NetworkRecord): string[] {
  const gateway = gatewayOf(network);
  if (gateway === undefined) return [];
  return [
    `oifname ${gateway.device} ether saddr ${gateway.mac} drop comment "gateway stays local"`,
  ];
}

import type { NetworkRecord, StateDocument } from "../state/model.ts";

// The names, the packet mark and the formatting that Switchyard's firewall renderers share:
// the nftables ruleset (render-nft.ts) with its published ports (render-published.ts), the
// resolver's and the overlay's guards (render-resolver.ts, render-overlay.ts) and the iptables
// chain (render-iptables.ts).

/** Name of Switchyard's nftables table (family inet: one table for IPv4 and IPv6). */
export const NFT_TABLE = "switchyard";
/** The nftables set of Switchyard's bridges. */
export const BRIDGE_SET = "bridges";
/** The nftables set of the host's uplinks (the interfaces of its default routes). */
export const UPLINK_SET = "uplinks";

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

/** An interface name as an nft string: `"sy-one"`. */
export const quote = (name: string): string => `"${name}"`;

/** A mark as nft and iptables write it: `0x` and eight hex digits. */
export const hex = (value: number): string => `0x${value.toString(16).padStart(8, "0")}`;

/** The state's networks in bridge-name order: the order of every per-network rule. */
export function networksByBridge(state: Readonly<StateDocument>): NetworkRecord[] {
  return Object.values(state.networks).sort((a, b) => a.bridge.localeCompare(b.bridge));
}

import type { KeyValue } from "./kv.ts";

// The layout of multi-host state in etcd, in one place: every key the cluster reads, writes,
// compares or watches is built here, so its spelling cannot drift between writer and reader.
//
//   switchyard/v1/networks/VNI/config                 the agreed subnet, gateway, block length
//   switchyard/v1/networks/VNI/hosts/HOST             a member's VXLAN address (on its lease)
//   switchyard/v1/networks/VNI/blocks/BLOCK           the host handing out addresses from BLOCK
//   switchyard/v1/networks/VNI/addresses/ADDRESS      the host holding a static address
//   switchyard/v1/networks/VNI/names/HOST/ENDPOINT    a container's names (on the host's lease)

/** Where this host's share of multi-host state lives in etcd. */
const ROOT = "switchyard/v1/networks";

/** Every key of one multi-host network starts with this. */
export const networkPrefix = (vni: number): string => `${ROOT}/${vni}/`;

/** The network's record: the config every host agreed on (see network-config.ts). */
export const configKey = (vni: number): string => `${networkPrefix(vni)}config`;

/** The members' registrations. */
export const hostsPrefix = (vni: number): string => `${networkPrefix(vni)}hosts/`;

/** One host's registration: its VXLAN address, on its lease. */
export const hostKey = (vni: number, hostId: string): string => `${hostsPrefix(vni)}${hostId}`;

/** The address blocks hosts hand out addresses from. */
export const blocksPrefix = (vni: number): string => `${networkPrefix(vni)}blocks/`;

/** One address block's holder; the CIDR's "/" (etcd's key separator) is spelled "_". */
export const blockKey = (vni: number, block: string): string =>
  `${blocksPrefix(vni)}${block.replace("/", "_")}`;

/** The static addresses (`--ip`) taken cluster-wide. */
export const addressesPrefix = (vni: number): string => `${networkPrefix(vni)}addresses/`;

/** One static address's holder. */
export const addressKey = (vni: number, address: string): string =>
  `${addressesPrefix(vni)}${address}`;

/** The names every host publishes on the network. */
export const namesPrefix = (vni: number): string => `${networkPrefix(vni)}names/`;

/** The names one host publishes on the network, each under the endpoint's ID. */
export const hostNamesPrefix = (vni: number, hostId: string): string =>
  `${namesPrefix(vni)}${hostId}/`;

/** What follows `prefix` in `key`, or undefined when the key is not under the prefix. */
export function keyBelow(prefix: string, key: string): string | undefined {
  return key.startsWith(prefix) ? key.slice(prefix.length) : undefined;
}

/**
 * Whether an entry of the network is the host's own: its registration, its names, and the
 * blocks and static addresses it holds. Pure.
 */
export function isHostsOwn(vni: number, hostId: string, entry: KeyValue): boolean {
  if (entry.key === hostKey(vni, hostId)) return true;
  if (entry.key.startsWith(hostNamesPrefix(vni, hostId))) return true;
  return (
    (entry.key.startsWith(blocksPrefix(vni)) || entry.key.startsWith(addressesPrefix(vni))) &&
    entry.value === hostId
  );
}

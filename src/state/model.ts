import type { IpamSnapshot } from "../ipam/ipam.ts";

/** One IP family's addressing of a network, as Docker's IPAM handed it over. */
export interface NetworkAddressing {
  pool: string;
  /** Gateway with prefix length, e.g. "10.15.20.1/24"; absent when Docker gave none. */
  gateway?: string;
}

/** "10.15.20.5/24" → "10.15.20.5" (a bare address is returned as it is). */
export const bareAddress = (address: string): string => address.split("/")[0] ?? address;

/** The first gateway (with prefix length) among a family's addressing, if any. */
export function firstGateway(addressing: readonly NetworkAddressing[]): string | undefined {
  return addressing.find((item) => item.gateway !== undefined)?.gateway;
}

/** A network as the driver knows it. */
export interface NetworkRecord {
  id: string;
  bridge: string;
  /** True when Switchyard created the bridge (and so may address and delete it). */
  bridgeOwned: boolean;
  ipv4: NetworkAddressing[];
  ipv6: NetworkAddressing[];
  mtu?: number;
  internal: boolean;
  enableIpv6: boolean;
  icc: boolean;
  masquerade: boolean;
  hostBindingIpv4?: string;
  /** The `-o` options exactly as given, kept for the status view and reconciliation. */
  options: Record<string, string>;
  /** Set for a multi-host network: its VXLAN id (`-o vxlan.id=N`). */
  vxlanId?: number;
}

/** This host's share of a multi-host network (the shared part lives in etcd). */
export interface ClusterNetworkRecord {
  vni: number;
  networkId: string;
  /** The local IPAM pool addresses of this network come from. */
  poolId?: string;
  subnet: string;
  /** Gateway with prefix length, the same on every host. */
  gateway: string;
  /** Address blocks this host claimed in etcd; automatic addresses come only from these. */
  blocks: string[];
  /** Underlay addresses of the other hosts, last seen (used while etcd is away). */
  peers: string[];
  /** Static addresses (`--ip`) this host took cluster-wide in etcd. */
  statics?: string[];
}

/** Multi-host state kept locally. */
export interface ClusterState {
  /** This host's ID in etcd, made once and kept. */
  hostId: string;
  networks: Record<string, ClusterNetworkRecord>;
}

/** One published port as Docker describes it in the port map. */
export interface PortBinding {
  proto: "tcp" | "udp" | "sctp";
  containerPort: number;
  hostIp: string;
  hostPort: number;
  hostPortEnd: number;
}

/** An endpoint (one container interface) as the driver knows it. */
export interface EndpointRecord {
  id: string;
  networkId: string;
  hostVeth: string;
  peerVeth: string;
  mac: string;
  /** With prefix length, e.g. "10.15.20.130/24". */
  address?: string;
  addressV6?: string;
  ports: PortBinding[];
  /**
   * Multi-host networks only: the container's network namespace (Join's SandboxKey), and the
   * prefix length of the route to the name resolver Join gave it (distinct per sandbox: Docker
   * fails a Join whose route a sandbox already has).
   */
  sandbox?: string;
  resolverRoute?: number;
  /**
   * The container's name, as Docker 29 and later send it with RequestAddress
   * (`com.docker.network.endpoint.name`); what names across hosts publish without the Docker API.
   */
  name?: string;
}

/** Everything Switchyard knows; persisted as one document. */
export interface StateDocument {
  version: 1;
  ipam: IpamSnapshot;
  networks: Record<string, NetworkRecord>;
  endpoints: Record<string, EndpointRecord>;
  cluster?: ClusterState;
}

/** The state of a plugin that has never run. */
export function emptyState(): StateDocument {
  return { version: 1, ipam: { version: 1, pools: {} }, networks: {}, endpoints: {} };
}

import type { IpAddress, IpPrefix } from "../ipam/prefix.ts";

/** What Switchyard needs to know about a host interface. */
export interface LinkInfo {
  name: string;
  /** Kernel link kind ("bridge", "veth", "dummy", …); undefined for plain devices like eth0. */
  kind: string | undefined;
  up: boolean;
  master: string | undefined;
  mtu: number;
  mac: string | undefined;
}

/** A bridge Switchyard wants to exist. */
export interface BridgeSpec {
  name: string;
  /** Addresses with prefix length, e.g. "10.15.20.1/24" or "fd00::1/64". */
  addresses: string[];
  mtu?: number;
  /** MAC to pin, so a re-created bridge keeps the gateway's MAC. */
  mac?: string;
}

/** A veth pair for one endpoint; the peer goes into the container. */
export interface VethSpec {
  hostName: string;
  peerName: string;
  peerMac: string;
  mtu?: number;
  /** Bridge to enslave the host end to (and bring it up), in the same command. */
  bridge?: string;
}

/** The VXLAN device that carries a multi-host network between hosts. */
export interface VxlanSpec {
  name: string;
  vni: number;
  /** This host's underlay address. */
  local: string;
  bridge: string;
  mtu?: number;
}

/** Which connection-tracking entries to delete: those of traffic sent to one host port. */
export interface ConntrackFilter {
  proto: "tcp" | "udp" | "sctp";
  /** The original destination port (a published host port, before any DNAT). */
  port: number;
  family: 4 | 6;
  /** Only entries originally sent to this address; to any address when absent. */
  destination?: IpAddress;
}

/** Host interface operations, named for intent and idempotent. */
export interface Datapath {
  /** The interface with that name, or undefined. */
  link(name: string): Promise<LinkInfo | undefined>;
  /** Every interface on the host. */
  links(): Promise<LinkInfo[]>;
  /** Creates the bridge if missing, sets MTU, adds missing addresses, brings it up. */
  ensureBridge(spec: BridgeSpec): Promise<void>;
  /** Deletes a bridge; absent is success. */
  deleteBridge(name: string): Promise<void>;
  /** Creates (or re-creates) the veth pair. */
  ensureVeth(spec: VethSpec): Promise<void>;
  /** Enslaves the host end to the bridge and brings it up. */
  attach(hostName: string, bridge: string): Promise<void>;
  /** Deletes an interface (and a veth's peer); absent is success. */
  deleteLink(name: string): Promise<void>;
  /** Creates the VXLAN device if missing and enslaves it to the bridge, up. */
  ensureVxlan(spec: VxlanSpec): Promise<void>;
  /** Makes the device flood broadcast and unknown traffic to exactly these peers. */
  setFloodPeers(device: string, peers: readonly string[]): Promise<void>;
  /**
   * Adds an address (`/32`) to the loopback interface if missing: a local address reached
   * through any interface, needing no kernel module (a dummy interface would, and a host
   * inside a container cannot load one).
   */
  ensureLocalAddress(address: string): Promise<void>;
  /** The MTU of the interface holding an address (the underlay), or undefined. */
  mtuOfAddress(address: string): Promise<number | undefined>;
  /**
   * The prefixes routed (any table) or addressed on this host, both families, as networks and
   * without duplicates; default routes, link-local, multicast and broadcast entries left out.
   */
  hostPrefixes(): Promise<IpPrefix[]>;
  /**
   * Deletes the connection-tracking entries a filter matches (none is success) and answers
   * how many went, so the next packet of a flow is translated by the rules as they are now.
   * Optional: a datapath without conntrack (the in-memory fakes) publishes without it.
   */
  deleteConntrackEntries?(filter: ConntrackFilter): Promise<number>;
}

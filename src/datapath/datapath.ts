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
  /** Takes the host end off its bridge; absent is success. */
  detach(hostName: string): Promise<void>;
  /** Deletes an interface (and a veth's peer); absent is success. */
  deleteLink(name: string): Promise<void>;
}

import { badRequest, conflict, internal, SwitchyardError } from "../errors.ts";
import { vxlanDeviceName } from "../names.ts";
import type {
  ClusterState,
  NetworkAddressing,
  NetworkRecord,
  StateDocument,
} from "../state/model.ts";
import type { DriverContext } from "./context.ts";

/**
 * Lock key of a VXLAN id: creating its network and applying the etcd watch's peer updates
 * take turns, so an update that arrives mid-creation is not lost.
 */
export const vxlanKey = (vni: number): string => `vxlan:${vni}`;

/** Bytes a VXLAN header adds (outer Ethernet, IP, UDP and VXLAN). */
const VXLAN_OVERHEAD = 50;

/** What joining a multi-host network settled: the shared addressing, the MTU and the peers. */
export interface OverlayJoin {
  vni: number;
  subnet: string;
  gateway: string;
  mtu: number;
  peers: string[];
  /** The local IPAM pool the network's addresses come from. */
  poolId: string;
}

/**
 * Everything about multi-host networks: the etcd side (join, leave, peers) through the
 * cluster service, and this host's VXLAN device. Other parts of the driver ask this one.
 */
export class Overlay {
  readonly #context: DriverContext;
  /** Latest peers seen per VXLAN id, also before the network exists here. */
  readonly #peers = new Map<number, string[]>();
  /** VXLAN ids whose network is being created here right now. */
  readonly #joining = new Set<number>();

  constructor(context: DriverContext) {
    this.#context = context;
  }

  /**
   * Agrees with the other hosts in etcd on a multi-host network (never inside the state
   * queue); `leave` undoes it. What can be refused without etcd is refused first.
   */
  async join(
    vni: number,
    ipv4: readonly NetworkAddressing[],
    mtu: number | undefined,
    enableIpv6 = false,
  ): Promise<OverlayJoin> {
    const cluster = this.#context.cluster.service;
    const pending = this.#context.cluster.pending;
    if (cluster === undefined && pending !== undefined) throw internal(pending);
    if (cluster === undefined) {
      throw badRequest(
        "option vxlan.id makes a multi-host network, which needs etcd: docker plugin set switchyard:latest ETCD_ENDPOINTS=http://HOST:2379 (while disabled)",
      );
    }
    if (enableIpv6) {
      throw badRequest(
        `a multi-host network (-o vxlan.id=${vni}) is IPv4 only for now: create it without --ipv6`,
      );
    }
    const first = ipv4[0];
    if (first?.gateway === undefined)
      throw badRequest(`a multi-host network needs an IPv4 subnet and gateway`);
    // Addresses come from blocks claimed in etcd, which only Switchyard's IPAM driver does;
    // another IPAM driver would hand out the same addresses on every host.
    // The pool of another network on this host (IPAM pools never overlap) is not this one's.
    const document = this.#context.state.document;
    const usedPools = new Set([
      ...Object.values(document.networks).flatMap((network) => network.ipv4.map((a) => a.pool)),
    ]);
    const poolId = usedPools.has(first.pool)
      ? undefined
      : this.#context.state.ipam.pools().find((pool) => !pool.v6 && pool.pool === first.pool)
          ?.poolId;
    if (poolId === undefined) {
      throw badRequest(
        `a multi-host network (-o vxlan.id=${vni}) needs Switchyard's IPAM driver, which keeps addresses apart across hosts: add --ipam-driver switchyard:latest to docker network create`,
      );
    }
    if (this.#context.state.ipam.pool(poolId)?.sticky) {
      throw badRequest(
        `a multi-host network (-o vxlan.id=${vni}) cannot keep addresses for names (--ipam-opt sticky=true): its addresses come from blocks claimed across hosts; create it without sticky`,
      );
    }
    const owner = Object.values(this.#context.state.document.networks).find(
      (network) => network.vxlanId === vni,
    );
    if (owner !== undefined || this.#joining.has(vni)) {
      throw conflict(
        `vxlan.id ${vni} is already used by network ${owner?.id.slice(0, 12) ?? "(being created)"} on this host`,
      );
    }
    this.#joining.add(vni);
    let joined = false;
    try {
      await cluster.joinNetwork(
        vni,
        { subnet: first.pool, gateway: first.gateway },
        { fresh: true },
      );
      joined = true;
      // VXLAN adds 50 bytes: unless told otherwise, leave room for them under the underlay MTU.
      const underlay = (await this.#context.datapath.mtuOfAddress(cluster.identity.vtep)) ?? 1500;
      return {
        vni,
        subnet: first.pool,
        gateway: first.gateway,
        mtu: mtu ?? underlay - VXLAN_OVERHEAD,
        peers: this.#peers.get(vni) ?? [],
        poolId,
      };
    } catch (error) {
      // A join cut short leaves nothing in etcd: the caller has no undo for it yet. A join
      // that failed half-way may have registered this host, so that is undone too.
      if (joined || !(error instanceof SwitchyardError && error.kind === "Conflict"))
        await this.leave(vni);
      this.#joining.delete(vni);
      throw error;
    }
  }

  /** The creation of a network joined with {@link join} ended (made or undone). */
  joined(vni: number): void {
    this.#joining.delete(vni);
  }

  /** Drops this host's entries from etcd; failures are logged (leases age them out). */
  async leave(vni: number): Promise<void> {
    try {
      await this.#context.cluster.service?.leaveNetwork(vni);
    } catch (error) {
      this.#context.logger.warn(
        { err: error, vni },
        "cannot remove this host's entries from etcd yet; retrying in the background",
      );
    }
  }

  /** Creates (or repairs) the network's VXLAN device and points its flooding at the peers. */
  async ensureDevice(network: NetworkRecord, peers: readonly string[]): Promise<void> {
    const cluster = this.#context.cluster.service;
    if (network.vxlanId === undefined || cluster === undefined) return;
    const name = vxlanDeviceName(network.vxlanId);
    await this.#context.datapath.ensureVxlan({
      name,
      vni: network.vxlanId,
      local: cluster.identity.vtep,
      bridge: network.bridge,
      mtu: network.mtu,
    });
    await this.#context.datapath.setFloodPeers(name, peers);
  }

  /**
   * The peers of a network: the latest the etcd watch reported, else those last recorded
   * (used while etcd is away, e.g. at start-up).
   */
  peersOf(state: Readonly<StateDocument>, vni: number | undefined): string[] {
    if (vni === undefined) return [];
    return this.#peers.get(vni) ?? state.cluster?.networks[String(vni)]?.peers ?? [];
  }

  /** Adds this host's share of a joined network to a state document (pure). */
  record(state: StateDocument, networkId: string, join: OverlayJoin): void {
    this.#clusterState(state).networks[String(join.vni)] = {
      vni: join.vni,
      networkId,
      poolId: join.poolId,
      subnet: join.subnet,
      gateway: join.gateway,
      blocks: [],
      peers: join.peers,
    };
  }

  /** The other hosts of a multi-host network changed (from the etcd watch). */
  updatePeers(vni: number, peers: string[]): Promise<void> {
    return this.#context.locks.run([vxlanKey(vni)], async () => {
      this.#peers.set(vni, peers);
      const record = this.#context.state.document.cluster?.networks[String(vni)];
      if (record === undefined) return;
      await this.#context.datapath.setFloodPeers(vxlanDeviceName(vni), peers);
      if (record.peers.join() === peers.join()) return;
      this.#context.logger.info({ vni, peers }, "peer hosts changed");
      // The packet filter takes VXLAN only from peers: let a new one in before recording it.
      const update = (state: StateDocument): void => {
        const current = state.cluster?.networks[String(vni)];
        if (current !== undefined) current.peers = peers;
      };
      await this.#context.firewall.around(update, () => this.#context.state.commit(update));
    });
  }

  /** Multi-host networks this host is part of, to re-join in etcd after a restart. */
  networks(): { vni: number; config: { subnet: string; gateway: string } }[] {
    return Object.values(this.#context.state.document.cluster?.networks ?? {}).map((network) => ({
      vni: network.vni,
      config: { subnet: network.subnet, gateway: network.gateway },
    }));
  }

  #clusterState(state: StateDocument): ClusterState {
    state.cluster ??= {
      hostId: this.#context.cluster.service?.identity.hostId ?? "",
      networks: {},
    };
    return state.cluster;
  }
}

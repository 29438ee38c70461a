import type { Logger } from "pino";
import { AddressClaims, type OwnedClaims } from "./claims.ts";
import { hostNamesPrefix } from "./keys.ts";
import type { KeyValueStore } from "./kv.ts";
import { renewalDelay, retryDelay, SharedLease } from "./lease.ts";
import { type ClusterIdentity, Membership } from "./membership.ts";
import { NameSync, type NamesOutOfSync, writeNames } from "./name-sync.ts";
import type { ClusterNetworkConfig } from "./network-config.ts";
import type { NameRecord, PublishedName } from "./published-names.ts";
import { NetworkWatcher } from "./watch.ts";

export type {
  ClusterIdentity,
  ClusterNetworkConfig,
  NameRecord,
  NamesOutOfSync,
  OwnedClaims,
  PublishedName,
};
export { renewalDelay, retryDelay };

/** How often this host's names in etcd are checked against the desired set. */
const NAMES_RESYNC_MS = 10_000;

/**
 * A host's view of the cluster: which hosts share each multi-host network (VXLAN id), which
 * address blocks this host holds, which static addresses are taken cluster-wide, which names
 * every host publishes. All of it lives in etcd (keys.ts draws the layout). Hosts'
 * registrations and names carry a lease, so a dead host ages out of the peers; blocks and
 * static addresses carry none, so a host that is down keeps them (its containers may still
 * run) and nobody else hands them out. Every claim is one compare-and-swap.
 *
 * The one entry point for the driver and the name service; the work is the modules':
 * {@link Membership} (join, leave, resume, registering again), {@link AddressClaims},
 * {@link SharedLease}, {@link NetworkWatcher} (peers and names from etcd) and {@link NameSync}
 * (this host's names into etcd).
 */
export class ClusterService {
  readonly #identity: ClusterIdentity;
  readonly #lease: SharedLease;
  readonly #watcher: NetworkWatcher;
  readonly #claims: AddressClaims;
  /** This host's names per network: the desired sets, and the passes that make etcd agree. */
  readonly #names: NameSync;
  readonly #membership: Membership;

  constructor(deps: {
    /** etcd in production; tests share one in-memory store between several services. */
    kv: KeyValueStore;
    logger: Logger;
    identity: ClusterIdentity;
    blockLength: number;
    onPeers: (vni: number, peers: string[]) => void;
    /** The names published by every host of a network changed (the whole list each time). */
    onNames?: (vni: number, names: PublishedName[]) => void;
    /** What the local state holds in a network, to claim again after a restart or a lost lease. */
    ownedClaims?: (vni: number) => OwnedClaims;
    /** Tests shorten the renewal timer, the watch's idle limit and the retries' waits. */
    renewalDelay?: (failures: number) => number;
    watchIdleMs?: number;
    retryDelay?: (failures: number) => number;
    rejoinDelayMs?: number;
    /** The wait between passes over this host's names in etcd while they succeed. */
    namesResyncMs?: number;
  }) {
    const { kv, logger, identity } = deps;
    const retryAfter = deps.retryDelay ?? retryDelay;
    this.#identity = identity;
    this.#lease = new SharedLease({
      kv,
      logger,
      renewalDelay: deps.renewalDelay ?? renewalDelay,
      renew: () => this.renewLease(),
    });
    this.#watcher = new NetworkWatcher({
      kv,
      logger,
      hostId: identity.hostId,
      onPeers: deps.onPeers,
      onNames: deps.onNames ?? (() => {}),
      watchIdleMs: deps.watchIdleMs,
    });
    this.#claims = new AddressClaims({
      kv,
      logger,
      hostId: identity.hostId,
      blockLength: deps.blockLength,
      joined: (vni) => this.#membership.joined(vni),
      ownedClaims: deps.ownedClaims ?? (() => ({ blocks: [], statics: [] })),
    });
    this.#names = new NameSync({
      pass: async (vni, desired) =>
        writeNames(kv, hostNamesPrefix(vni, identity.hostId), await this.#lease.get(), desired),
      logger,
      retryDelay: retryAfter,
      resyncMs: deps.namesResyncMs ?? NAMES_RESYNC_MS,
    });
    this.#membership = new Membership({
      kv,
      logger,
      identity,
      blockLength: deps.blockLength,
      lease: this.#lease,
      claims: this.#claims,
      names: this.#names,
      watcher: this.#watcher,
      retryDelay: retryAfter,
      rejoinDelayMs: deps.rejoinDelayMs,
    });
  }

  get identity(): ClusterIdentity {
    return this.#identity;
  }

  /** Joins (or re-joins) a multi-host network ({@link Membership.join}). */
  joinNetwork(
    vni: number,
    config: ClusterNetworkConfig,
    options: { fresh?: boolean } = {},
  ): Promise<void> {
    return this.#membership.join(vni, config, options);
  }

  /** Leaves a multi-host network; a leave etcd does not take stays pending ({@link Membership.leave}). */
  leaveNetwork(vni: number): Promise<void> {
    return this.#membership.leave(vni);
  }

  /** Networks whose leave etcd has not taken yet (retried in the background). */
  leavesPending(): number[] {
    return this.#membership.leavesPending();
  }

  /** Whether this host is (being) a member of the network in etcd. */
  isJoined(vni: number): boolean {
    return this.#membership.joined(vni) !== undefined;
  }

  /** Re-joins every network after a restart, retrying until etcd answers ({@link Membership.resume}). */
  resume(networks: { vni: number; config: ClusterNetworkConfig }[]): void {
    this.#membership.resume(networks);
  }

  /**
   * What the renewal timer runs: keeps the lease alive, and registers again in full after a
   * lost one ({@link Membership.renew}). Public so tests drive it without waiting for the timer.
   */
  renewLease(): Promise<boolean> {
    return this.#membership.renew();
  }

  /** A free address block for this host ({@link AddressClaims.claimBlock}). */
  claimBlock(
    vni: number,
    subnet: string,
    held: readonly string[],
    range?: string,
  ): Promise<string> {
    return this.#claims.claimBlock(vni, subnet, held, range);
  }

  /** Takes a static address cluster-wide ({@link AddressClaims.claimAddress}). */
  claimAddress(vni: number, address: string): Promise<void> {
    return this.#claims.claimAddress(vni, address);
  }

  /** Gives back a static address taken with {@link claimAddress}; others' are left alone. */
  releaseAddress(vni: number, address: string): Promise<void> {
    return this.#claims.releaseAddress(vni, address);
  }

  /** Blocks this host must not hand out new addresses from: etcd gives them to another host. */
  conflictedBlocks(vni: number): readonly string[] {
    return this.#claims.conflictedBlocks(vni);
  }

  /**
   * Sets all the names this host has on a joined multi-host network, endpoint ID → record,
   * replacing the previous set; etcd is then made to hold exactly these under this host's
   * prefix and lease (missing ones put, changed ones rewritten, others deleted), at once,
   * after every new lease, every 10 s, and with backoff until etcd agrees. Ignored for a
   * network not joined (its names go with the leave).
   */
  setLocalNames(vni: number, records: ReadonlyMap<string, NameRecord>): void {
    if (this.isJoined(vni)) this.#names.set(vni, records);
  }

  /**
   * Resolves once etcd holds the network's names as last set (at once when it does, or when
   * the network is not joined or its names were never set since joining).
   */
  namesSettled(vni: number): Promise<void> {
    return this.#names.settled(vni);
  }

  /** Networks whose names etcd does not hold as set (the last pass failed), and why. */
  namesOutOfSync(): NamesOutOfSync[] {
    return this.#names.outOfSync();
  }

  /**
   * Stops keep-alives, watches and every background retry (re-joins, pending leaves, names), at
   * shutdown; the lease then ages out. A leave still pending is done by the next
   * `joinNetwork(..., { fresh: true })` of the network, or by the last host to leave.
   */
  stop(): void {
    this.#lease.stopRenewals();
    this.#membership.stop();
    this.#names.stop();
    this.#watcher.stop();
  }
}

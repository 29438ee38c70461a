import type { Logger } from "pino";
import { conflict, internal, SwitchyardError } from "../errors.ts";
import { AddressClaims, type OwnedClaims } from "./claims.ts";
import { absent, holds, TXN_ATTEMPTS, unchangedSince } from "./compares.ts";
import { configKey, hostKey, hostNamesPrefix, isHostsOwn, networkPrefix } from "./keys.ts";
import type { KeyValueStore, TxnOperation } from "./kv.ts";
import { renewalDelay, retryDelay, SharedLease } from "./lease.ts";
import { NameSync, type NamesOutOfSync, planNameWrites } from "./name-sync.ts";
import {
  type ClusterNetworkConfig,
  type JoinedNetwork,
  parseStoredConfig,
  type StoredConfig,
} from "./network-config.ts";
import type { NameRecord, PublishedName } from "./published-names.ts";
import { NetworkWatcher } from "./watch.ts";

export type { ClusterNetworkConfig, NameRecord, NamesOutOfSync, OwnedClaims, PublishedName };
export { renewalDelay, retryDelay };

/** How long resume() waits before trying again to re-join a network. */
const REJOIN_DELAY_MS = 2_000;
/** How often this host's names in etcd are checked against the desired set. */
const NAMES_RESYNC_MS = 10_000;
/** Name writes of one pass in flight at once. */
const NAME_WRITES_AT_ONCE = 16;

/** This host in the cluster. */
export interface ClusterIdentity {
  /** Stable across restarts (kept in the local state). */
  hostId: string;
  /** The underlay address VXLAN traffic to this host goes to. */
  vtep: string;
}

/** A leave etcd has not taken yet: the try in flight, and the timer of the next one. */
interface PendingLeave {
  attempt: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
  failures: number;
}

/**
 * A host's view of the cluster: which hosts share each multi-host network (VXLAN id), which
 * address blocks this host holds, which static addresses are taken cluster-wide. All of it
 * lives in etcd. Hosts' registrations carry a lease, so a dead host ages out of the peers;
 * blocks and static addresses carry none, so a host that is down keeps them (its containers
 * may still run) and nobody else hands them out. Every claim is one compare-and-swap.
 */
export class ClusterService {
  readonly #kv: KeyValueStore;
  readonly #logger: Logger;
  readonly #blockLength: number;
  readonly #identity: ClusterIdentity;
  readonly #watcher: NetworkWatcher;
  /** Networks this host is a member of: the config it joined with and the agreed block length. */
  readonly #joined = new Map<number, JoinedNetwork>();
  readonly #claims: AddressClaims;
  /**
   * Joins under way, per network: a leave waits for them, and the lease is never dropped
   * while one may be registering on it.
   */
  readonly #joinsInFlight = new Map<number, Set<Promise<void>>>();
  /** Leaves etcd did not take, retried in the background until it does. */
  readonly #pendingLeaves = new Map<number, PendingLeave>();
  /** resume()'s re-joins still to succeed, per network: leaving the network calls one off. */
  readonly #rejoins = new Map<number, { timer: NodeJS.Timeout | undefined }>();
  readonly #retryDelay: (failures: number) => number;
  readonly #rejoinDelayMs: number;
  readonly #lease: SharedLease;
  /** Set from losing the lease until every network has this host's registration again. */
  #registrationLost = false;
  /** This host's names per network: the desired sets, and the passes that make etcd agree. */
  readonly #names: NameSync;

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
    this.#kv = deps.kv;
    this.#logger = deps.logger;
    this.#identity = deps.identity;
    this.#blockLength = deps.blockLength;
    this.#watcher = new NetworkWatcher({
      kv: deps.kv,
      logger: deps.logger,
      hostId: deps.identity.hostId,
      onPeers: deps.onPeers,
      onNames: deps.onNames ?? (() => {}),
      watchIdleMs: deps.watchIdleMs,
    });
    this.#claims = new AddressClaims({
      kv: deps.kv,
      logger: deps.logger,
      hostId: deps.identity.hostId,
      blockLength: deps.blockLength,
      joined: (vni) => this.#joined.get(vni),
      ownedClaims: deps.ownedClaims ?? (() => ({ blocks: [], statics: [] })),
    });
    this.#lease = new SharedLease({
      kv: deps.kv,
      logger: deps.logger,
      renewalDelay: deps.renewalDelay ?? renewalDelay,
      renew: () => this.renewLease(),
    });
    this.#retryDelay = deps.retryDelay ?? retryDelay;
    this.#rejoinDelayMs = deps.rejoinDelayMs ?? REJOIN_DELAY_MS;
    this.#names = new NameSync({
      pass: (vni, desired) => this.#syncNames(vni, desired),
      logger: deps.logger,
      retryDelay: this.#retryDelay,
      resyncMs: deps.namesResyncMs ?? NAMES_RESYNC_MS,
    });
  }

  get identity(): ClusterIdentity {
    return this.#identity;
  }

  /**
   * Joins (or re-joins) a multi-host network: records its subnet and gateway the first time,
   * refuses a different one later, registers this host so the others send it traffic, claims
   * again what the local state says this host holds, and starts following the other hosts.
   * `fresh`: the network is being created here, so the local state holds nothing of it and
   * any block or static address etcd still gives this host is a leftover of a leave that
   * failed (etcd away, or this process restarted before its retry succeeded): those are given
   * back. A leave of the network still pending here is called off first.
   */
  async joinNetwork(
    vni: number,
    config: ClusterNetworkConfig,
    options: { fresh?: boolean } = {},
  ): Promise<void> {
    const join = this.#join(vni, config, options);
    let joins = this.#joinsInFlight.get(vni);
    if (joins === undefined) {
      joins = new Set();
      this.#joinsInFlight.set(vni, joins);
    }
    joins.add(join);
    try {
      await join;
    } finally {
      joins.delete(join);
      if (joins.size === 0) this.#joinsInFlight.delete(vni);
      // A failed join that was all that held the lease gives it back.
      await this.#dropLeaseIfIdle();
    }
  }

  async #join(vni: number, config: ClusterNetworkConfig, options: { fresh?: boolean }) {
    // A pending leave would undo this join: called off, after its try in flight (if any).
    await this.#callOffLeave(vni);
    const blockLength = await this.#register(vni, config);
    this.#joined.set(vni, { config, blockLength });
    // Created here: no names yet, so any in etcd (a failed leave's) go at once.
    this.#names.open(vni, options.fresh === true);
    this.#watcher.follow(vni);
    if (options.fresh) await this.#claims.dropLeftovers(vni);
    else await this.#claims.reclaim(vni);
  }

  /**
   * Leaves a multi-host network: drops this host's registration, blocks and static addresses
   * in one transaction. When nothing of any other host is left (no registration, and no block
   * or static address of a host that is down) the same transaction clears the network; it
   * fails, and is tried again, if another host wrote to the network since it was read. A
   * re-join of {@link resume} still retrying is called off, and one in flight awaited.
   *
   * Rejects when etcd did not take the leave (away, or other hosts kept changing the network);
   * the leave then stays pending ({@link leavesPending}) and is retried in the background, with
   * backoff, until it succeeds, the network is joined again here, or {@link stop}; the lease is
   * kept alive meanwhile. The caller has nothing to undo or retry: the rejection is for its log.
   */
  async leaveNetwork(vni: number): Promise<void> {
    this.#cancelRejoin(vni);
    // A join under way (resume()'s) would register this host again once the leave is done.
    await Promise.allSettled([...(this.#joinsInFlight.get(vni) ?? [])]);
    this.#watcher.unfollow(vni);
    this.#joined.delete(vni);
    this.#claims.forget(vni);
    // A names pass in flight could write after the leave's delete: it ends first.
    const namesClosed = this.#names.close(vni);
    // Pending from here on, with no wait since the network was dropped: the lease stays.
    const previous = this.#pendingLeaves.get(vni);
    clearTimeout(previous?.timer);
    const pending: PendingLeave = { attempt: undefined, timer: undefined, failures: 0 };
    this.#pendingLeaves.set(vni, pending);
    await Promise.all([previous?.attempt?.catch(() => undefined), namesClosed]);
    try {
      await this.#tryLeave(vni, pending);
    } finally {
      // Without networks nothing needs the lease: revoked, or (etcd away) left to expire.
      await this.#dropLeaseIfIdle();
    }
  }

  /** Networks whose leave etcd has not taken yet (retried in the background). */
  leavesPending(): number[] {
    return [...this.#pendingLeaves.keys()].sort((a, b) => a - b);
  }

  /**
   * One try of a pending leave. On failure the next try is scheduled, unless the leave was
   * called off meanwhile; rejects with the failure either way.
   */
  #tryLeave(vni: number, pending: PendingLeave): Promise<void> {
    const attempt = (async () => {
      try {
        await this.#dropClaims(vni);
      } catch (error) {
        if (this.#pendingLeaves.get(vni) === pending) {
          pending.failures += 1;
          pending.timer = setTimeout(
            () => void this.#retryLeave(vni, pending),
            this.#retryDelay(pending.failures),
          );
          pending.timer.unref();
        }
        throw error;
      }
      if (this.#pendingLeaves.get(vni) === pending) this.#pendingLeaves.delete(vni);
    })();
    pending.attempt = attempt;
    return attempt;
  }

  async #retryLeave(vni: number, pending: PendingLeave): Promise<void> {
    pending.timer = undefined;
    if (this.#pendingLeaves.get(vni) !== pending) return;
    try {
      await this.#tryLeave(vni, pending);
    } catch (error) {
      this.#logger.debug(
        { err: error, vni, tries: pending.failures },
        "cannot leave the network in etcd yet; retrying",
      );
      return;
    }
    this.#logger.info(
      { vni, tries: pending.failures + 1 },
      "left the multi-host network in etcd, after a leave etcd had not taken",
    );
    await this.#dropLeaseIfIdle();
  }

  /** Ends a pending leave of the network (its try in flight, if any, is awaited). */
  async #callOffLeave(vni: number): Promise<void> {
    const pending = this.#pendingLeaves.get(vni);
    if (pending === undefined) return;
    this.#pendingLeaves.delete(vni);
    clearTimeout(pending.timer);
    await pending.attempt?.catch(() => undefined);
  }

  async #dropClaims(vni: number): Promise<void> {
    const base = networkPrefix(vni);
    for (let attempt = 0; ; attempt++) {
      const listing = await this.#kv.snapshot(base);
      const mine = listing.entries.filter((entry) => isHostsOwn(vni, this.#identity.hostId, entry));
      const others = listing.entries.filter(
        (entry) => entry.key !== configKey(vni) && !mine.includes(entry),
      );
      const { succeeded } = await this.#kv.txn(
        others.length === 0
          ? {
              compare: [unchangedSince(base, listing.revision, true)],
              success: [{ type: "delete", key: base, prefix: true }],
            }
          : {
              compare: mine.map((entry) => unchangedSince(entry.key, listing.revision)),
              success: mine.map((entry) => ({ type: "delete", key: entry.key })),
            },
      );
      if (succeeded) break;
      if (attempt >= TXN_ATTEMPTS) {
        throw internal(`cannot leave vxlan.id ${vni}: other hosts kept changing it in etcd`);
      }
    }
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
    if (this.#joined.has(vni)) this.#names.set(vni, records);
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

  /** Whether this host is (being) a member of the network in etcd. */
  isJoined(vni: number): boolean {
    return this.#joined.has(vni);
  }

  /**
   * One names pass: lists this host's entries for the network and writes what differs from
   * `desired`. Every write is tried; rejects with the first failure.
   */
  async #syncNames(vni: number, desired: ReadonlyMap<string, NameRecord>): Promise<void> {
    const lease = await this.#lease.get();
    const prefix = hostNamesPrefix(vni, this.#identity.hostId);
    const writes = planNameWrites(desired, await this.#kv.range(prefix), prefix, lease);
    let failure: { error: unknown } | undefined;
    for (let from = 0; from < writes.length; from += NAME_WRITES_AT_ONCE) {
      const results = await Promise.allSettled(
        writes
          .slice(from, from + NAME_WRITES_AT_ONCE)
          .map((write) =>
            write.type === "put"
              ? this.#kv.put(write.key, write.value, lease)
              : this.#kv.delete(write.key),
          ),
      );
      for (const result of results) {
        if (result.status === "rejected") failure ??= { error: result.reason };
      }
    }
    if (failure !== undefined) throw failure.error;
  }

  /**
   * Re-joins every network after a restart, retrying (every 2 s) until etcd answers;
   * {@link leaveNetwork} of a network, or {@link stop}, calls its retries off.
   */
  resume(networks: { vni: number; config: ClusterNetworkConfig }[]): void {
    for (const { vni, config } of networks) {
      this.#cancelRejoin(vni);
      const rejoin: { timer: NodeJS.Timeout | undefined } = { timer: undefined };
      this.#rejoins.set(vni, rejoin);
      const attempt = (): void => {
        rejoin.timer = undefined;
        this.joinNetwork(vni, config).then(
          () => {
            if (this.#rejoins.get(vni) === rejoin) this.#rejoins.delete(vni);
          },
          (error: unknown) => {
            if (this.#rejoins.get(vni) !== rejoin) return;
            this.#logger.warn(
              { err: error, vni },
              "cannot rejoin multi-host network yet; retrying",
            );
            rejoin.timer = setTimeout(attempt, this.#rejoinDelayMs);
            rejoin.timer.unref();
          },
        );
      };
      attempt();
    }
  }

  #cancelRejoin(vni: number): void {
    clearTimeout(this.#rejoins.get(vni)?.timer);
    this.#rejoins.delete(vni);
  }

  /**
   * Stops keep-alives, watches and every background retry (re-joins, pending leaves), at
   * shutdown; the lease then ages out. A leave still pending is done by the next
   * `joinNetwork(..., { fresh: true })` of the network, or by the last host to leave.
   */
  stop(): void {
    this.#lease.stopRenewals();
    for (const vni of [...this.#rejoins.keys()]) this.#cancelRejoin(vni);
    for (const pending of this.#pendingLeaves.values()) clearTimeout(pending.timer);
    this.#pendingLeaves.clear();
    this.#names.stop();
    this.#watcher.stop();
  }

  /**
   * Records the network's config if it has none, and registers this host, in one transaction;
   * registering checks the config is still there, so a last host clearing the network at the
   * same time cannot leave this one registered in a network without config. Answers the
   * network's block length.
   */
  async #register(vni: number, config: ClusterNetworkConfig): Promise<number> {
    const recordKey = configKey(vni);
    for (let attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
      const lease = await this.#lease.get();
      const register: TxnOperation = {
        type: "put",
        key: hostKey(vni, this.#identity.hostId),
        value: this.#identity.vtep,
        lease,
      };
      const existing = await this.#kv.get(recordKey);
      if (existing === undefined) {
        const stored: StoredConfig = { ...config, blockLength: this.#blockLength };
        const record: TxnOperation = { type: "put", key: recordKey, value: JSON.stringify(stored) };
        if (
          (await this.#kv.txn({ compare: [absent(recordKey)], success: [record, register] }))
            .succeeded
        )
          return this.#blockLength;
        continue;
      }
      const recorded = parseStoredConfig(vni, existing);
      if (recorded.subnet !== config.subnet || recorded.gateway !== config.gateway) {
        throw conflict(
          `vxlan.id ${vni} is already used with subnet ${recorded.subnet} and gateway ${recorded.gateway} on other hosts; create the network with the same --subnet and --gateway on every host`,
        );
      }
      const same = holds(recordKey, existing);
      if ((await this.#kv.txn({ compare: [same], success: [register] })).succeeded) {
        return recorded.blockLength ?? this.#blockLength;
      }
    }
    throw internal(`cannot join vxlan.id ${vni}: its record in etcd kept changing`);
  }

  /**
   * What the renewal timer runs: keeps the lease alive; if it expired while etcd was away,
   * registers again in full (lease, registration, blocks, static addresses, and a names pass
   * that puts this host's names back on the new lease) and keeps trying on later runs until
   * every network has this host back. True when all is in order (the names pass retries on
   * its own). Public so tests drive it without waiting for the timer.
   */
  async renewLease(): Promise<boolean> {
    try {
      if ((await this.#lease.keepAlive()) && !this.#registrationLost) return true;
    } catch (error) {
      this.#logger.warn({ err: error }, "cannot renew etcd lease; running containers keep working");
      return false;
    }
    this.#registrationLost = true;
    let complete = true;
    for (const [vni, joined] of this.#joined) {
      try {
        await this.#register(vni, joined.config);
        await this.#claims.reclaim(vni);
        // Names on the lost lease went with it: a pass puts them back on this one.
        this.#names.kick(vni);
      } catch (error) {
        complete = false;
        const conflicting = error instanceof SwitchyardError && error.kind === "Conflict";
        this.#logger[conflicting ? "error" : "warn"](
          { err: error, vni },
          "cannot register this host again yet; retrying",
        );
      }
    }
    if (complete) this.#registrationLost = false;
    return complete;
  }

  /**
   * Drops the lease once nothing needs it: no network joined, none being joined (a join may
   * hold the lease's promise already), no leave pending.
   */
  async #dropLeaseIfIdle(): Promise<void> {
    if (this.#joined.size > 0 || this.#joinsInFlight.size > 0 || this.#pendingLeaves.size > 0) {
      return;
    }
    await this.#dropLease();
  }

  async #dropLease(): Promise<void> {
    this.#registrationLost = false;
    await this.#lease.drop();
  }
}

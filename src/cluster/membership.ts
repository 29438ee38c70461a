import type { Logger } from "pino";
import { conflict, internal, SwitchyardError } from "../errors.ts";
import type { AddressClaims } from "./claims.ts";
import { absent, holds, TXN_ATTEMPTS } from "./compares.ts";
import { configKey, hostKey } from "./keys.ts";
import type { KeyValueStore, TxnOperation } from "./kv.ts";
import type { SharedLease } from "./lease.ts";
import type { NameSync } from "./name-sync.ts";
import {
  type ClusterNetworkConfig,
  type JoinedNetwork,
  parseStoredConfig,
  type StoredConfig,
} from "./network-config.ts";
import { PendingLeaves } from "./pending-leaves.ts";
import type { NetworkWatcher } from "./watch.ts";

/** How long resume() waits before trying again to re-join a network. */
const REJOIN_DELAY_MS = 2_000;

/** This host in the cluster. */
export interface ClusterIdentity {
  /** Stable across restarts (kept in the local state). */
  hostId: string;
  /** The underlay address VXLAN traffic to this host goes to. */
  vtep: string;
}

/**
 * Which multi-host networks this host is a member of in etcd: joining (record the config,
 * register on the shared lease, claim again or give back, follow the others), leaving,
 * re-joining after a restart, and registering again after a lost lease. It decides when the
 * lease is no longer needed; the claims, names and watches it starts and ends are the other
 * modules'.
 */
export class Membership {
  readonly #kv: KeyValueStore;
  readonly #logger: Logger;
  readonly #identity: ClusterIdentity;
  readonly #blockLength: number;
  readonly #lease: SharedLease;
  readonly #claims: AddressClaims;
  readonly #names: NameSync;
  readonly #watcher: NetworkWatcher;
  readonly #leaves: PendingLeaves;
  readonly #rejoinDelayMs: number;
  /** Networks this host is a member of: the config it joined with and the agreed block length. */
  readonly #joined = new Map<number, JoinedNetwork>();
  /**
   * Joins under way, per network: a leave waits for them, and the lease is never dropped
   * while one may be registering on it.
   */
  readonly #joinsInFlight = new Map<number, Set<Promise<void>>>();
  /** resume()'s re-joins still to succeed, per network: leaving the network calls one off. */
  readonly #rejoins = new Map<number, { timer: NodeJS.Timeout | undefined }>();
  /** Set from losing the lease until every network has this host's registration again. */
  #registrationLost = false;

  constructor(deps: {
    kv: KeyValueStore;
    logger: Logger;
    identity: ClusterIdentity;
    blockLength: number;
    lease: SharedLease;
    claims: AddressClaims;
    names: NameSync;
    watcher: NetworkWatcher;
    retryDelay: (failures: number) => number;
    rejoinDelayMs?: number;
  }) {
    this.#kv = deps.kv;
    this.#logger = deps.logger;
    this.#identity = deps.identity;
    this.#blockLength = deps.blockLength;
    this.#lease = deps.lease;
    this.#claims = deps.claims;
    this.#names = deps.names;
    this.#watcher = deps.watcher;
    this.#rejoinDelayMs = deps.rejoinDelayMs ?? REJOIN_DELAY_MS;
    this.#leaves = new PendingLeaves({
      kv: deps.kv,
      logger: deps.logger,
      hostId: deps.identity.hostId,
      retryDelay: deps.retryDelay,
      onLeftLater: () => this.#dropLeaseIfIdle(),
    });
  }

  /** The network as joined, while this host is (being) a member. */
  joined(vni: number): JoinedNetwork | undefined {
    return this.#joined.get(vni);
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
  async join(
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
    await this.#leaves.callOff(vni);
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
  async leave(vni: number): Promise<void> {
    this.#cancelRejoin(vni);
    // A join under way (resume()'s) would register this host again once the leave is done.
    await Promise.allSettled([...(this.#joinsInFlight.get(vni) ?? [])]);
    this.#watcher.unfollow(vni);
    this.#joined.delete(vni);
    this.#claims.forget(vni);
    // A names pass in flight could write after the leave's delete: it ends first.
    const namesClosed = this.#names.close(vni);
    try {
      // Pending from here on, with no wait since the network was dropped: the lease stays.
      await this.#leaves.leave(vni, namesClosed);
    } finally {
      // Without networks nothing needs the lease: revoked, or (etcd away) left to expire.
      await this.#dropLeaseIfIdle();
    }
  }

  /** Networks whose leave etcd has not taken yet (retried in the background). */
  leavesPending(): number[] {
    return this.#leaves.networks();
  }

  /**
   * Re-joins every network after a restart, retrying (every 2 s) until etcd answers;
   * {@link leave} of a network, or {@link stop}, calls its retries off.
   */
  resume(networks: { vni: number; config: ClusterNetworkConfig }[]): void {
    for (const { vni, config } of networks) {
      this.#cancelRejoin(vni);
      const rejoin: { timer: NodeJS.Timeout | undefined } = { timer: undefined };
      this.#rejoins.set(vni, rejoin);
      const attempt = (): void => {
        rejoin.timer = undefined;
        this.join(vni, config).then(
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

  /** Calls off every re-join and pending leave (at shutdown). */
  stop(): void {
    for (const vni of [...this.#rejoins.keys()]) this.#cancelRejoin(vni);
    this.#leaves.stop();
  }

  /**
   * What the lease's renewal timer runs: keeps the lease alive; if it expired while etcd was
   * away, registers again in full (lease, registration, blocks, static addresses, and a names
   * pass that puts this host's names back on the new lease) and keeps trying on later runs
   * until every network has this host back. True when all is in order (the names pass
   * retries on its own).
   */
  async renew(): Promise<boolean> {
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
   * Drops the lease once nothing needs it: no network joined, none being joined (a join may
   * hold the lease's promise already), no leave pending.
   */
  async #dropLeaseIfIdle(): Promise<void> {
    if (this.#joined.size > 0 || this.#joinsInFlight.size > 0 || this.#leaves.any) return;
    this.#registrationLost = false;
    await this.#lease.drop();
  }
}

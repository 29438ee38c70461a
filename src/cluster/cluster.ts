import type { Logger } from "pino";
import { conflict, exhausted, internal, SwitchyardError } from "../errors.ts";
import {
  addressBits,
  firstAddress,
  formatPrefix,
  type IpAddress,
  type IpPrefix,
  lastAddress,
  networkOf,
  nthSubnet,
  parseAddress,
  parsePrefix,
  prefixContainsAddress,
} from "../ipam/prefix.ts";
import { absent, holds, TXN_ATTEMPTS, unchangedSince } from "./compares.ts";
import {
  addressesPrefix,
  addressKey,
  blockKey,
  blocksPrefix,
  configKey,
  hostKey,
  hostNamesPrefix,
  hostsPrefix,
  isHostsOwn,
  keyBelow,
  namesPrefix,
  networkPrefix,
} from "./keys.ts";
import type { KeyValueStore, TxnOperation } from "./kv.ts";
import { renewalDelay, retryDelay, SharedLease } from "./lease.ts";
import { NameSync, type NamesOutOfSync, planNameWrites } from "./name-sync.ts";
import type { NameRecord, PublishedName } from "./published-names.ts";
import { NetworkWatcher } from "./watch.ts";

export type { NameRecord, NamesOutOfSync, PublishedName };
export { renewalDelay, retryDelay };

/** How long resume() waits before trying again to re-join a network. */
const REJOIN_DELAY_MS = 2_000;
/** How often this host's names in etcd are checked against the desired set. */
const NAMES_RESYNC_MS = 10_000;
/** Name writes of one pass in flight at once. */
const NAME_WRITES_AT_ONCE = 16;

/** What every host of a multi-host network must agree on. */
export interface ClusterNetworkConfig {
  subnet: string;
  gateway: string;
}

/**
 * The network's record in etcd: the agreed config, and the block length the first host chose,
 * which every host then uses (blocks of different lengths would overlap).
 */
interface StoredConfig extends ClusterNetworkConfig {
  blockLength?: number;
}

/** This host in the cluster. */
export interface ClusterIdentity {
  /** Stable across restarts (kept in the local state). */
  hostId: string;
  /** The underlay address VXLAN traffic to this host goes to. */
  vtep: string;
}

/** The address blocks and static addresses this host's local state says it holds in a network. */
export interface OwnedClaims {
  blocks: readonly string[];
  statics: readonly string[];
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
  readonly #joined = new Map<number, { config: ClusterNetworkConfig; blockLength: number }>();
  /** Blocks this host holds locally but etcd gives to another host: no new addresses from them. */
  readonly #conflicts = new Map<number, Set<string>>();
  /**
   * Blocks {@link claimBlock} answered, or is claiming, in this process: a caller has them, so
   * they are never adopted as the leftover of a claim whose reply was lost.
   */
  readonly #blocksInHand = new Map<
    number,
    { answered: Set<string>; claiming: Map<string, number> }
  >();
  /**
   * Joins under way, per network: a leave waits for them, and the lease is never dropped
   * while one may be registering on it.
   */
  readonly #joinsInFlight = new Map<number, Set<Promise<void>>>();
  /** Leaves etcd did not take, retried in the background until it does. */
  readonly #pendingLeaves = new Map<number, PendingLeave>();
  /** resume()'s re-joins still to succeed, per network: leaving the network calls one off. */
  readonly #rejoins = new Map<number, { timer: NodeJS.Timeout | undefined }>();
  readonly #ownedClaims: (vni: number) => OwnedClaims;
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
    this.#ownedClaims = deps.ownedClaims ?? (() => ({ blocks: [], statics: [] }));
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
    if (options.fresh) await this.#dropLeftovers(vni);
    else await this.#reclaim(vni);
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
    this.#conflicts.delete(vni);
    this.#blocksInHand.delete(vni);
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

  /**
   * Claims a free address block for this host: a `/blockLength` of the subnet that overlaps
   * `range` (the pool's `--ip-range`, else the whole subnet), that no host holds and that holds
   * no other host's static address. Blocks stay aligned to the subnet whatever the range, so
   * hosts with different ranges never claim overlapping blocks. A block etcd already gives this
   * host that is not in `held` (a claim whose reply was lost, retried) is answered instead of
   * claiming another, so a retry never leaks a block.
   */
  async claimBlock(
    vni: number,
    subnet: string,
    held: readonly string[],
    range?: string,
  ): Promise<string> {
    const pool = parsePrefix(subnet);
    const carveFrom = range === undefined ? pool : parsePrefix(range);
    const length = this.#blockLengthIn(vni, pool);
    const base = networkPrefix(vni);
    let inHand = this.#blocksInHand.get(vni);
    if (inHand === undefined) {
      inHand = { answered: new Set(), claiming: new Map() };
      this.#blocksInHand.set(vni, inHand);
    }
    const { answered, claiming } = inHand;
    const inFlight = (block: string, delta: number): void => {
      const count = (claiming.get(block) ?? 0) + delta;
      if (count > 0) claiming.set(block, count);
      else claiming.delete(block);
    };
    let skippedForStatics = false;
    for (let attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
      const listing = await this.#kv.snapshot(base);
      /** Block key → holder. */
      const taken = new Map<string, string>();
      const foreignStatics: IpAddress[] = [];
      for (const entry of listing.entries) {
        if (entry.key.startsWith(blocksPrefix(vni))) taken.set(entry.key, entry.value);
        const address = keyBelow(addressesPrefix(vni), entry.key);
        if (address !== undefined && entry.value !== this.#identity.hostId) {
          foreignStatics.push(parseAddress(address));
        }
      }
      // A block etcd gives this host that the caller does not hold is one whose claim went
      // through while its reply was lost (the caller retried): that one, not another. Blocks
      // answered to another call, or being claimed by one, are that caller's.
      const conflicted = this.#conflicts.get(vni);
      for (const block of blocksOverlapping(pool, length, carveFrom)) {
        const text = formatPrefix(block);
        if (held.includes(text) || conflicted?.has(text)) continue;
        if (answered.has(text) || claiming.has(text)) continue;
        if (taken.get(blockKey(vni, text)) !== this.#identity.hostId) continue;
        answered.add(text);
        this.#logger.warn(
          { vni, block: text },
          "adopted address block etcd already gives this host",
        );
        return text;
      }
      let raced = false;
      for (const block of blocksOverlapping(pool, length, carveFrom)) {
        const text = formatPrefix(block);
        if (held.includes(text) || taken.has(blockKey(vni, text))) continue;
        if (foreignStatics.some((address) => prefixContainsAddress(block, address))) {
          skippedForStatics = true;
          continue;
        }
        // Atomic with the check of other hosts' statics: none appeared since the listing.
        inFlight(text, 1);
        let succeeded = false;
        try {
          ({ succeeded } = await this.#kv.txn({
            compare: [
              absent(blockKey(vni, text)),
              unchangedSince(addressesPrefix(vni), listing.revision, true),
            ],
            success: [{ type: "put", key: blockKey(vni, text), value: this.#identity.hostId }],
          }));
        } finally {
          // Failed, or unknown (no reply): a retry may adopt it if the write went through.
          if (succeeded) answered.add(text);
          inFlight(text, -1);
        }
        if (succeeded) {
          this.#logger.info({ vni, block: text }, "claimed address block");
          return text;
        }
        raced = true;
        break;
      }
      if (!raced) {
        const where = range === undefined ? subnet : `IP range ${range} of ${subnet}`;
        const why = skippedForStatics
          ? "is held by a host or holds another host's static address"
          : "is held by a host";
        throw exhausted(`no free address block left in ${where} (every /${length} ${why})`);
      }
    }
    throw internal(`cannot claim an address block of ${subnet}: other hosts kept claiming too`);
  }

  /**
   * Takes a static address (`--ip`) cluster-wide. Conflict, naming the holder, when another
   * host holds the address or the block it lies in; inside this host's own block it is fine.
   */
  async claimAddress(vni: number, address: string): Promise<void> {
    const key = addressKey(vni, address);
    const block = formatPrefix(await this.#blockOf(vni, parseAddress(address)));
    const blockPath = blockKey(vni, block);
    const take: TxnOperation = { type: "put", key, value: this.#identity.hostId };
    for (let attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
      if (
        (await this.#kv.txn({ compare: [absent(key), absent(blockPath)], success: [take] }))
          .succeeded
      )
        return;
      const [holder, blockHolder] = await Promise.all([this.#kv.get(key), this.#kv.get(blockPath)]);
      if (holder === this.#identity.hostId) return;
      if (holder !== undefined) {
        throw conflict(
          `address ${address} is already in use on another host (${holder}) of vxlan.id ${vni}`,
        );
      }
      if (blockHolder !== undefined && blockHolder !== this.#identity.hostId) {
        throw conflict(
          `address ${address} is in address block ${block}, from which host ${blockHolder} hands out addresses on vxlan.id ${vni}; take a static address outside the hosts' blocks (e.g. give the network an --ip-range for automatic addresses and use --ip outside it)`,
        );
      }
      if (blockHolder === this.#identity.hostId) {
        const ownBlock = holds(blockPath, this.#identity.hostId);
        if ((await this.#kv.txn({ compare: [absent(key), ownBlock], success: [take] })).succeeded)
          return;
      }
    }
    throw internal(`cannot claim address ${address}: other hosts kept changing vxlan.id ${vni}`);
  }

  /** Gives back a static address taken with {@link claimAddress}; others' are left alone. */
  async releaseAddress(vni: number, address: string): Promise<void> {
    const key = addressKey(vni, address);
    await this.#kv.txn({
      compare: [holds(key, this.#identity.hostId)],
      success: [{ type: "delete", key }],
    });
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

  /** Blocks this host must not hand out new addresses from: etcd gives them to another host. */
  conflictedBlocks(vni: number): readonly string[] {
    return [...(this.#conflicts.get(vni) ?? [])];
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
   * Claims again the blocks and static addresses the local state says this host holds (after
   * a restart, or a lost registration). One that another host holds now is a conflict: logged
   * as an error, and a block in conflict hands out no new addresses here.
   */
  async #reclaim(vni: number): Promise<void> {
    const owned = this.#ownedClaims(vni);
    if (owned.blocks.length === 0 && owned.statics.length === 0) return;
    const listing = await this.#kv.snapshot(networkPrefix(vni));
    const holders = new Map(listing.entries.map((entry) => [entry.key, entry.value]));
    const me = this.#identity.hostId;
    const conflicts = new Set<string>();
    for (const block of owned.blocks) {
      const key = blockKey(vni, block);
      let holder = holders.get(key);
      if (holder === undefined) {
        const put: TxnOperation = { type: "put", key, value: me };
        const { succeeded } = await this.#kv.txn({ compare: [absent(key)], success: [put] });
        holder = succeeded ? me : await this.#kv.get(key);
        if (succeeded) this.#logger.warn({ vni, block }, "claimed address block again in etcd");
      }
      if (holder !== me) {
        conflicts.add(block);
        this.#logger.error(
          { vni, block, holder },
          "CONFLICT: etcd gives this host's address block to another host; no new addresses from it here, and addresses already given from it may be in use twice",
        );
      }
      const prefix = parsePrefix(block);
      for (const entry of listing.entries) {
        const address = keyBelow(addressesPrefix(vni), entry.key);
        if (address === undefined || entry.value === me) continue;
        if (!prefixContainsAddress(prefix, parseAddress(address))) continue;
        this.#logger.error(
          { vni, block, address, holder: entry.value },
          "CONFLICT: another host holds a static address inside this host's address block; it may be in use twice",
        );
      }
    }
    for (const address of owned.statics) {
      if (holders.get(addressKey(vni, address)) === me) continue;
      try {
        await this.claimAddress(vni, address);
        this.#logger.warn({ vni, address }, "claimed static address again in etcd");
      } catch (error) {
        if (!(error instanceof SwitchyardError && error.kind === "Conflict")) throw error;
        this.#logger.error(
          { vni, address, err: error },
          "CONFLICT: this host's static address is held by another host; it may be in use twice",
        );
      }
    }
    this.#conflicts.set(vni, conflicts);
  }

  /** Gives back the blocks and static addresses etcd still records for this host. */
  async #dropLeftovers(vni: number): Promise<void> {
    const base = networkPrefix(vni);
    const listing = await this.#kv.snapshot(base);
    const leftovers = listing.entries.filter(
      (entry) =>
        isHostsOwn(vni, this.#identity.hostId, entry) &&
        !entry.key.startsWith(hostsPrefix(vni)) &&
        !entry.key.startsWith(namesPrefix(vni)),
    );
    if (leftovers.length === 0) return;
    this.#logger.warn(
      { vni, keys: leftovers.map((entry) => entry.key.slice(base.length)) },
      "giving back address blocks and static addresses left in etcd by an earlier network",
    );
    await this.#kv.txn({
      compare: leftovers.map((entry) => unchangedSince(entry.key, listing.revision)),
      success: leftovers.map((entry) => ({ type: "delete", key: entry.key })),
    });
  }

  /** The block length of a network: the one agreed in etcd once joined, else this host's. */
  #blockLengthIn(vni: number, pool: IpPrefix): number {
    const wanted = this.#joined.get(vni)?.blockLength ?? this.#blockLength;
    return Math.max(pool.length, Math.min(wanted, addressBits(pool.v6)));
  }

  /** The block an address lies in (whoever holds it), from the network's subnet. */
  async #blockOf(vni: number, address: IpAddress): Promise<IpPrefix> {
    let subnet = this.#joined.get(vni)?.config.subnet;
    if (subnet === undefined) {
      const stored = await this.#kv.get(configKey(vni));
      if (stored === undefined) throw internal(`vxlan.id ${vni} has no record in etcd`);
      subnet = parseStoredConfig(vni, stored).subnet;
    }
    const length = this.#blockLengthIn(vni, parsePrefix(subnet));
    return networkOf({ v6: address.v6, address: address.value, length });
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
        await this.#reclaim(vni);
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

/** The `/length` blocks of `pool`, in order, that share an address with `range`. */
function* blocksOverlapping(pool: IpPrefix, length: number, range: IpPrefix): Generator<IpPrefix> {
  const shift = BigInt(addressBits(pool.v6) - length);
  const base = firstAddress(pool);
  const poolLast = lastAddress(pool);
  // biome-ignore lint/complexity/useMathMinMax: bigints; Math.max does not take them
  const from = firstAddress(range) > base ? firstAddress(range) : base;
  // biome-ignore lint/complexity/useMathMinMax: bigints; Math.min does not take them
  const to = lastAddress(range) < poolLast ? lastAddress(range) : poolLast;
  if (from > to) return;
  for (let index = (from - base) >> shift; index <= (to - base) >> shift; index++) {
    yield nthSubnet(pool, length, index);
  }
}

/** The network's record in etcd, or Internal when it is not one Switchyard wrote. */
function parseStoredConfig(vni: number, text: string): StoredConfig {
  try {
    const parsed = JSON.parse(text) as StoredConfig;
    if (typeof parsed.subnet === "string" && typeof parsed.gateway === "string") return parsed;
  } catch {}
  throw internal(`vxlan.id ${vni}: etcd holds a record Switchyard cannot read: ${text}`);
}

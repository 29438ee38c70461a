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
  hostsPrefix,
  isHostsOwn,
  keyBelow,
  namesPrefix,
  networkPrefix,
} from "./keys.ts";
import type { KeyValueStore, TxnOperation } from "./kv.ts";
import { type JoinedNetwork, parseStoredConfig } from "./network-config.ts";

/** The address blocks and static addresses this host's local state says it holds in a network. */
export interface OwnedClaims {
  blocks: readonly string[];
  statics: readonly string[];
}

/**
 * This host's address blocks and static addresses in etcd: claimed with one compare-and-swap
 * each, claimed again after a restart or a lost registration, and given back. They carry no
 * lease, so a host that is down keeps them (its containers may still run) and nobody else
 * hands them out.
 */
export class AddressClaims {
  readonly #kv: KeyValueStore;
  readonly #logger: Logger;
  readonly #hostId: string;
  readonly #blockLength: number;
  readonly #joined: (vni: number) => JoinedNetwork | undefined;
  readonly #ownedClaims: (vni: number) => OwnedClaims;
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

  constructor(deps: {
    kv: KeyValueStore;
    logger: Logger;
    hostId: string;
    /** The block length this host asks for; a joined network's agreed one wins. */
    blockLength: number;
    /** The network as joined, when this host is a member. */
    joined: (vni: number) => JoinedNetwork | undefined;
    /** What the local state holds in a network, to claim again. */
    ownedClaims: (vni: number) => OwnedClaims;
  }) {
    this.#kv = deps.kv;
    this.#logger = deps.logger;
    this.#hostId = deps.hostId;
    this.#blockLength = deps.blockLength;
    this.#joined = deps.joined;
    this.#ownedClaims = deps.ownedClaims;
  }

  /** Forgets what this process knows of a network's blocks (left). */
  forget(vni: number): void {
    this.#conflicts.delete(vni);
    this.#blocksInHand.delete(vni);
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
        if (address !== undefined && entry.value !== this.#hostId) {
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
        if (taken.get(blockKey(vni, text)) !== this.#hostId) continue;
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
            success: [{ type: "put", key: blockKey(vni, text), value: this.#hostId }],
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
    const take: TxnOperation = { type: "put", key, value: this.#hostId };
    for (let attempt = 0; attempt < TXN_ATTEMPTS; attempt++) {
      if (
        (await this.#kv.txn({ compare: [absent(key), absent(blockPath)], success: [take] }))
          .succeeded
      )
        return;
      const [holder, blockHolder] = await Promise.all([this.#kv.get(key), this.#kv.get(blockPath)]);
      if (holder === this.#hostId) return;
      if (holder !== undefined) {
        throw conflict(
          `address ${address} is already in use on another host (${holder}) of vxlan.id ${vni}`,
        );
      }
      if (blockHolder !== undefined && blockHolder !== this.#hostId) {
        throw conflict(
          `address ${address} is in address block ${block}, from which host ${blockHolder} hands out addresses on vxlan.id ${vni}; take a static address outside the hosts' blocks (e.g. give the network an --ip-range for automatic addresses and use --ip outside it)`,
        );
      }
      if (blockHolder === this.#hostId) {
        const ownBlock = holds(blockPath, this.#hostId);
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
      compare: [holds(key, this.#hostId)],
      success: [{ type: "delete", key }],
    });
  }

  /** Blocks this host must not hand out new addresses from: etcd gives them to another host. */
  conflictedBlocks(vni: number): readonly string[] {
    return [...(this.#conflicts.get(vni) ?? [])];
  }

  /**
   * Claims again the blocks and static addresses the local state says this host holds (after
   * a restart, or a lost registration). One that another host holds now is a conflict: logged
   * as an error, and a block in conflict hands out no new addresses here.
   */
  async reclaim(vni: number): Promise<void> {
    const owned = this.#ownedClaims(vni);
    if (owned.blocks.length === 0 && owned.statics.length === 0) return;
    const listing = await this.#kv.snapshot(networkPrefix(vni));
    const holders = new Map(listing.entries.map((entry) => [entry.key, entry.value]));
    const me = this.#hostId;
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
  async dropLeftovers(vni: number): Promise<void> {
    const base = networkPrefix(vni);
    const listing = await this.#kv.snapshot(base);
    const leftovers = listing.entries.filter(
      (entry) =>
        isHostsOwn(vni, this.#hostId, entry) &&
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
    const wanted = this.#joined(vni)?.blockLength ?? this.#blockLength;
    return Math.max(pool.length, Math.min(wanted, addressBits(pool.v6)));
  }

  /** The block an address lies in (whoever holds it), from the network's subnet. */
  async #blockOf(vni: number, address: IpAddress): Promise<IpPrefix> {
    let subnet = this.#joined(vni)?.config.subnet;
    if (subnet === undefined) {
      const stored = await this.#kv.get(configKey(vni));
      if (stored === undefined) throw internal(`vxlan.id ${vni} has no record in etcd`);
      subnet = parseStoredConfig(vni, stored).subnet;
    }
    const length = this.#blockLengthIn(vni, parsePrefix(subnet));
    return networkOf({ v6: address.v6, address: address.value, length });
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

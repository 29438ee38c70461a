import { badRequest, conflict, exhausted, internal, notFound } from "../errors.ts";
import { SparseBitmap } from "./bitmap.ts";
import { checkDefaultPool, type IpamSettings, type ParsedDefaultPool } from "./defaults.ts";
import { HostRanges } from "./host-ranges.ts";
import {
  type AddressRequest,
  allocateAddress,
  allocateNamedAddress,
  formatOffset,
  freeAddress,
  isAddressAllocated,
  newPoolState,
  type PoolInfo,
  type PoolState,
  poolInfo,
} from "./pool.ts";
import {
  familyName,
  formatPrefix,
  type IpPrefix,
  isNetworkPrefix,
  lastAddress,
  networkOf,
  parseAddressOrPrefix,
  parsePrefix,
  prefixContains,
  prefixContainsAddress,
  prefixSize,
} from "./prefix.ts";
import { findOverlapping, lastStartingAtOrBefore } from "./sorted-ranges.ts";
import { StickyReservations, type StickySnapshot } from "./sticky.ts";

export type { DefaultPool, IpamSettings } from "./defaults.ts";
export { defaultIpamSettings, parseDefaultPools } from "./defaults.ts";
export type { AddressRequest, PoolInfo } from "./pool.ts";

/** A RequestPool call in internal form: `pool` is `--subnet`, `subPool` is `--ip-range`. */
export interface PoolRequest {
  addressSpace: string;
  pool?: string;
  subPool?: string;
  v6: boolean;
  options?: Record<string, string>;
  /** Keep each container name's automatic address for it (`--ipam-opt sticky=true`). */
  sticky?: boolean;
  /**
   * Prefixes routed or addressed on the host (both families may be mixed in one list; default
   * routes, /0, are ignored). An automatic pool never overlaps one of them, in either address
   * space; an explicit `pool` is not checked against them, as Docker's bridge driver does not
   * refuse a --subnet that overlaps a host route either.
   */
  avoid?: readonly IpPrefix[];
}

/** One pool in a snapshot; addresses are stored as bits at their offset from the network. */
export interface PoolSnapshot {
  addressSpace: string;
  pool: string;
  subPool?: string;
  v6: boolean;
  /** The last address handed out automatically; the next search starts after it. */
  lastAllocated?: string;
  /** Allocated offsets as {@link SparseBitmap.encode} writes them (4,096-bit chunks, base64). */
  allocated: Record<string, string>;
  /** Present for a sticky pool: the addresses kept for container names. */
  sticky?: StickySnapshot;
}

/** Everything the allocator knows, as plain JSON. */
export interface IpamSnapshot {
  version: 1;
  pools: Record<string, PoolSnapshot>;
}

/** A position in the default pools' candidate sequence: subnet `subnet` of default `pool`. */
interface CandidatePosition {
  pool: number;
  subnet: bigint;
}

/** The pools of one address space and family, sorted by first address (they never overlap). */
class PoolIndex {
  readonly #pools: PoolState[] = [];
  /**
   * Every default-pool candidate before this position is known to be taken, so repeated
   * automatic requests do not re-walk the pools they handed out (1,000 pools stay linear).
   * Adding pools keeps this true; releasing one moves it back to the first candidate that
   * overlaps the released pool (candidates before that one are held by other pools still).
   */
  searchFrom: CandidatePosition = { pool: 0, subnet: 0n };

  insert(pool: PoolState): void {
    this.#pools.splice(lastStartingAtOrBefore(this.#pools, pool.first) + 1, 0, pool);
  }

  remove(pool: PoolState): void {
    const at = lastStartingAtOrBefore(this.#pools, pool.first);
    if (this.#pools[at] === pool) this.#pools.splice(at, 1);
  }

  /** A pool sharing an address with `[first, last]`: the one that ends last, if several. */
  findOverlap(first: bigint, last: bigint): PoolState | undefined {
    return findOverlapping(this.#pools, first, last);
  }
}

const ADDRESS_SPACES: readonly string[] = ["LocalDefault", "GlobalDefault"];

/**
 * Switchyard's address allocator: pools per address space, addresses per pool in a sparse
 * bitmap. Pure (no I/O, clock or randomness); every method either succeeds or throws a
 * SwitchyardError and changes nothing.
 */
export class Ipam {
  static readonly localAddressSpace = "LocalDefault";
  static readonly globalAddressSpace = "GlobalDefault";

  readonly #defaultsV4: readonly ParsedDefaultPool[];
  readonly #defaultsV6: readonly ParsedDefaultPool[];
  readonly #pools = new Map<string, PoolState>();
  readonly #indexes = new Map<string, PoolIndex>();
  /**
   * Inverses of the changes since recording began ({@link savepoint}), newest last: undoing a
   * change costs what the change did, where a copy of every pool would cost the whole host.
   */
  #undo: (() => void)[] | undefined;
  /** Pools changed since the last {@link settle}. */
  readonly #changed = new Set<string>();

  /** Throws badRequest on bad default pools, internal on a snapshot that cannot be restored. */
  constructor(settings: IpamSettings, snapshot?: IpamSnapshot) {
    this.#defaultsV4 = settings.defaultPoolsV4.map((pool) => checkDefaultPool(pool, false));
    this.#defaultsV6 = settings.defaultPoolsV6.map((pool) => checkDefaultPool(pool, true));
    if (snapshot !== undefined) this.#restore(snapshot);
  }

  /** Reserves an explicit pool, or the first free default subnet when `pool` is empty. */
  requestPool(req: PoolRequest): { poolId: string; pool: string } {
    const addressSpace = checkAddressSpace(req.addressSpace);
    const index = this.#index(addressSpace, req.v6);
    const poolText = req.pool === "" ? undefined : req.pool;
    const subPoolText = req.subPool === "" ? undefined : req.subPool;
    let prefix: IpPrefix;
    let subPrefix: IpPrefix | undefined;
    let searchFrom: CandidatePosition | undefined;
    if (poolText === undefined) {
      if (subPoolText !== undefined) {
        throw badRequest(
          `cannot use IP range ${subPoolText} without a subnet: give the subnet too`,
        );
      }
      ({ prefix, position: searchFrom } = this.#findFreeDefault(
        addressSpace,
        req.v6,
        index,
        req.avoid ?? [],
      ));
    } else {
      prefix = parseNetwork(poolText, req.v6, "pool");
      if (subPoolText !== undefined) {
        subPrefix = parseNetwork(subPoolText, req.v6, "IP range");
        if (!prefixContains(prefix, subPrefix)) {
          throw badRequest(`IP range ${subPoolText} is not inside pool ${formatPrefix(prefix)}`);
        }
      }
      const clash = index.findOverlap(prefix.address, lastAddress(prefix));
      if (clash !== undefined) {
        throw conflict(
          `pool ${formatPrefix(prefix)} overlaps ${formatPrefix(clash.prefix)} already in use`,
        );
      }
    }
    const state = newPoolState(
      addressSpace,
      prefix,
      subPrefix,
      new SparseBitmap(prefixSize(prefix)),
      req.sticky === true ? new StickyReservations() : undefined,
    );
    const previousFrom = index.searchFrom;
    this.#pools.set(state.poolId, state);
    index.insert(state);
    if (searchFrom !== undefined) index.searchFrom = searchFrom;
    this.#record(state.poolId, () => {
      this.#pools.delete(state.poolId);
      index.remove(state);
      index.searchFrom = previousFrom;
    });
    return { poolId: state.poolId, pool: formatPrefix(prefix) };
  }

  /** Forgets a pool and every address allocated in it. */
  releasePool(poolId: string): void {
    const pool = this.#getPool(poolId);
    // Put back in its place on undo: pools() lists pools in the order they were requested.
    const order = this.#undo === undefined ? [] : [...this.#pools.keys()];
    this.#pools.delete(poolId);
    const index = this.#index(pool.addressSpace, pool.prefix.v6);
    index.remove(pool);
    const freed = this.#firstCandidateOverlapping(pool);
    const from = index.searchFrom;
    this.#record(poolId, () => {
      const pools = new Map(this.#pools);
      this.#pools.clear();
      for (const id of order) {
        const entry = id === poolId ? pool : pools.get(id);
        if (entry !== undefined) this.#pools.set(id, entry);
      }
      index.insert(pool);
      index.searchFrom = from;
    });
    if (
      freed !== undefined &&
      (freed.pool < from.pool || (freed.pool === from.pool && freed.subnet < from.subnet))
    ) {
      index.searchFrom = freed;
    }
  }

  /**
   * Allocates an address and returns it with the pool's length ("10.15.20.5/24").
   * An explicit address may lie anywhere in the pool (outside the IP range too, as Docker
   * allows for --ip, --gateway and --aux-address). A gateway without an address gets the
   * first free host of the whole pool (network+1 unless taken). Otherwise the search runs
   * onward from the last automatic allocation through the IP range and wraps once, so a
   * just-released address is not handed out again at once.
   */
  requestAddress(poolId: string, req: AddressRequest): string {
    const { result, undo } = allocateAddress(this.#getPool(poolId), req);
    this.#record(poolId, undo);
    return result;
  }

  /**
   * An automatic address for a container name in a sticky pool: the one kept for the name when
   * it is free; else the next free address no other name keeps; else, when only kept addresses
   * are free, the least recently used one, taken from its name (`takenFrom`, for the log).
   * The address is then kept for `name`. In a pool that is not sticky, the name is not used.
   */
  requestNamedAddress(poolId: string, name: string): { address: string; takenFrom?: string } {
    const { result, undo } = allocateNamedAddress(this.#getPool(poolId), name);
    this.#record(poolId, undo);
    return result;
  }

  /** Frees an address; one that is not allocated is fine (Docker retries), one outside is not. */
  releaseAddress(poolId: string, address: string): void {
    const undo = freeAddress(this.#getPool(poolId), address);
    if (undo !== undefined) this.#record(poolId, undo);
  }

  /** A deep, JSON-serialisable copy; `new Ipam(settings, snapshot)` restores it exactly. */
  snapshot(): IpamSnapshot {
    const pools: Record<string, PoolSnapshot> = {};
    for (const pool of this.#pools.values()) pools[pool.poolId] = snapshotPool(pool);
    return { version: 1, pools };
  }

  /** One pool's part of {@link snapshot}, or undefined when there is no such pool. */
  poolSnapshot(poolId: string): PoolSnapshot | undefined {
    const pool = this.#pools.get(poolId);
    return pool === undefined ? undefined : snapshotPool(pool);
  }

  /**
   * Starts (or continues) recording changes so they can be undone, and returns a mark to undo
   * back to with {@link rollbackTo}. Recording lasts until {@link settle}.
   */
  savepoint(): number {
    this.#undo ??= [];
    return this.#undo.length;
  }

  /** Undoes every change made since the savepoint, newest first. */
  rollbackTo(savepoint: number): void {
    const undo = this.#undo ?? [];
    while (undo.length > savepoint) undo.pop()?.();
  }

  /**
   * The IDs of the pools changed since the last {@link settle} (undone changes included): what
   * a store has to write again, not every pool.
   */
  changedPools(): string[] {
    return [...this.#changed];
  }

  /** Ends recording: the changes so far can no longer be undone, and none counts as changed. */
  settle(): void {
    this.#undo = undefined;
    this.#changed.clear();
  }

  #record(poolId: string, undo: () => void): void {
    this.#changed.add(poolId);
    this.#undo?.push(undo);
  }

  /** The pool with this ID, or undefined. */
  pool(poolId: string): PoolInfo | undefined {
    const pool = this.#pools.get(poolId);
    return pool === undefined ? undefined : poolInfo(pool);
  }

  /** Every pool, in the order they were requested. */
  pools(): PoolInfo[] {
    return [...this.#pools.values()].map(poolInfo);
  }

  /**
   * True when the address is allocated in the pool; false for one outside it.
   * Throws notFound for an unknown pool, badRequest for a malformed address.
   */
  isAllocated(poolId: string, address: string): boolean {
    return isAddressAllocated(this.#getPool(poolId), address);
  }

  #getPool(poolId: string): PoolState {
    const pool = this.#pools.get(poolId);
    if (pool === undefined) throw notFound(`no such pool "${poolId}"`);
    return pool;
  }

  #index(addressSpace: string, v6: boolean): PoolIndex {
    const key = `${addressSpace} ${familyName(v6)}`;
    let index = this.#indexes.get(key);
    if (index === undefined) {
      index = new PoolIndex();
      this.#indexes.set(key, index);
    }
    return index;
  }

  /**
   * The first default subnet that overlaps no pool of the space and no host prefix, walking the
   * default pools in order and jumping past each pool or host prefix in the way (one step per
   * obstacle, not per subnet). The position returned is where the next search may start: the
   * first subnet skipped only for the host, if any, since the host may stop using it.
   */
  #findFreeDefault(
    addressSpace: string,
    v6: boolean,
    index: PoolIndex,
    avoid: readonly IpPrefix[],
  ): { prefix: IpPrefix; position: CandidatePosition } {
    const defaults = v6 ? this.#defaultsV6 : this.#defaultsV4;
    const host = HostRanges.of(avoid, v6);
    let firstSkippedForHost: CandidatePosition | undefined;
    let subnet = index.searchFrom.subnet;
    for (let pool = index.searchFrom.pool; pool < defaults.length; pool++, subnet = 0n) {
      const base = defaults[pool];
      if (base === undefined) break;
      while (subnet < base.count) {
        const first = base.base.address + subnet * base.step;
        const last = first + base.step - 1n;
        const poolClash = index.findOverlap(first, last);
        const clashLast = poolClash?.last ?? host.overlapEnd(first, last);
        if (clashLast === undefined) {
          const prefix = { v6, address: first, length: base.size };
          return { prefix, position: firstSkippedForHost ?? { pool, subnet } };
        }
        if (poolClash === undefined) firstSkippedForHost ??= { pool, subnet };
        subnet = (clashLast - base.base.address) / base.step + 1n;
      }
    }
    const family = familyName(v6);
    if (defaults.length === 0) {
      throw exhausted(
        `cannot allocate an ${family} pool in ${addressSpace}: no ${family} default pools are configured; give a subnet`,
      );
    }
    const listed = defaults.map((d) => `${formatPrefix(d.base)}:${d.size}`).join(", ");
    if (firstSkippedForHost !== undefined) {
      const blocking = host.blocking(defaults.map((d) => d.base));
      throw exhausted(
        `cannot allocate an ${family} pool in ${addressSpace}: every subnet of the default pools (${listed}) is in use or overlaps a route or address on this host (${blocking}); give a subnet`,
      );
    }
    throw exhausted(
      `cannot allocate an ${family} pool in ${addressSpace}: every subnet of the default pools is in use (${listed})`,
    );
  }

  /** The earliest default-pool candidate that shares an address with the pool, if any. */
  #firstCandidateOverlapping(pool: PoolState): CandidatePosition | undefined {
    const defaults = pool.prefix.v6 ? this.#defaultsV6 : this.#defaultsV4;
    for (let i = 0; i < defaults.length; i++) {
      const base = defaults[i];
      if (base === undefined) break;
      const baseLast = lastAddress(base.base);
      if (pool.first > baseLast || pool.last < base.base.address) continue;
      // The first address both share (Math.max takes no bigint).
      let from = base.base.address;
      if (pool.first > from) from = pool.first;
      return { pool: i, subnet: (from - base.base.address) / base.step };
    }
    return undefined;
  }

  #restore(snapshot: IpamSnapshot): void {
    if (snapshot === null || typeof snapshot !== "object" || snapshot.version !== 1) {
      throw internal(
        `cannot restore IPAM state: unsupported snapshot version ${String(snapshot?.version)}`,
      );
    }
    for (const [poolId, entry] of Object.entries(snapshot.pools ?? {})) {
      try {
        const pool = restorePool(entry);
        if (pool.poolId !== poolId) throw new Error(`its fields give the ID "${pool.poolId}"`);
        const index = this.#index(pool.addressSpace, pool.prefix.v6);
        const clash = index.findOverlap(pool.first, pool.last);
        if (clash !== undefined) throw new Error(`it overlaps pool "${clash.poolId}"`);
        this.#pools.set(poolId, pool);
        index.insert(pool);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        throw internal(`cannot restore IPAM state: pool "${poolId}": ${reason}`, error);
      }
    }
  }
}

function checkAddressSpace(addressSpace: string): string {
  if (!ADDRESS_SPACES.includes(addressSpace)) {
    throw badRequest(
      `unknown address space "${addressSpace}": Switchyard serves only ${ADDRESS_SPACES.join(" and ")}`,
    );
  }
  return addressSpace;
}

/** Parses a pool or IP range: a network CIDR of the requested family. */
function parseNetwork(text: string, v6: boolean, what: string): IpPrefix {
  const prefix = parsePrefix(text);
  if (prefix.v6 !== v6) {
    throw badRequest(
      `${what} ${text} is ${familyName(prefix.v6)}, but the request is for ${familyName(v6)}`,
    );
  }
  if (!isNetworkPrefix(prefix)) {
    throw badRequest(
      `"${text}" is not a network address; did you mean ${formatPrefix(networkOf(prefix))}?`,
    );
  }
  return prefix;
}

function restorePool(entry: PoolSnapshot): PoolState {
  const addressSpace = checkAddressSpace(entry.addressSpace);
  const prefix = parseNetwork(entry.pool, entry.v6 === true, "pool");
  const subPrefix =
    entry.subPool === undefined ? undefined : parseNetwork(entry.subPool, prefix.v6, "IP range");
  if (subPrefix !== undefined && !prefixContains(prefix, subPrefix)) {
    throw new Error(`IP range ${entry.subPool} is not inside pool ${entry.pool}`);
  }
  const allocations = SparseBitmap.decode(prefixSize(prefix), entry.allocated ?? {});
  const size = prefixSize(prefix);
  const sticky =
    entry.sticky === undefined
      ? undefined
      : StickyReservations.restore(entry.sticky, (offset) => {
          if (offset <= 0n || offset >= size)
            throw new Error(`sticky offset ${offset} is outside the pool`);
        });
  const pool = newPoolState(addressSpace, prefix, subPrefix, allocations, sticky);
  const broadcast = prefixSize(prefix) - 1n;
  for (const reserved of pool.hostLast < broadcast ? [0n, broadcast] : [0n]) {
    if (allocations.has(reserved)) {
      throw new Error(`reserved address ${formatOffset(pool, reserved)} is marked allocated`);
    }
  }
  if (entry.lastAllocated !== undefined) {
    const cursor = parseAddressOrPrefix(entry.lastAllocated);
    if (!prefixContainsAddress(prefix, cursor)) {
      throw new Error(`last allocated address ${entry.lastAllocated} is outside the pool`);
    }
    pool.cursor = cursor.value - pool.first;
  }
  return pool;
}

function snapshotPool(pool: PoolState): PoolSnapshot {
  return {
    addressSpace: pool.addressSpace,
    pool: formatPrefix(pool.prefix),
    ...(pool.subPrefix === undefined ? {} : { subPool: formatPrefix(pool.subPrefix) }),
    v6: pool.prefix.v6,
    ...(pool.cursor === undefined ? {} : { lastAllocated: formatOffset(pool, pool.cursor) }),
    allocated: pool.allocations.encode(),
    ...(pool.sticky === undefined ? {} : { sticky: pool.sticky.snapshot() }),
  };
}

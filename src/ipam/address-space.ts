import { badRequest, conflict, exhausted } from "../errors.ts";
import { SparseBitmap } from "./bitmap.ts";
import { checkDefaultPool, type IpamSettings, type ParsedDefaultPool } from "./defaults.ts";
import { HostRanges } from "./host-ranges.ts";
import { newPoolState, type PoolChange, type PoolState } from "./pool.ts";
import {
  familyName,
  formatPrefix,
  type IpPrefix,
  isNetworkPrefix,
  lastAddress,
  networkOf,
  parsePrefix,
  prefixContains,
  prefixSize,
} from "./prefix.ts";
import { findOverlapping, lastStartingAtOrBefore } from "./sorted-ranges.ts";
import { StickyReservations } from "./sticky.ts";

/**
 * Which pools exist in each address space: the pools by ID (in the order they were requested),
 * an index per address space and family for overlap checks, and the search for a free subnet
 * of the default pools.
 */

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

/** The pools of every address space, and the default pools automatic pools are cut from. */
export class AddressSpaces {
  readonly #defaultsV4: readonly ParsedDefaultPool[];
  readonly #defaultsV6: readonly ParsedDefaultPool[];
  readonly #pools = new Map<string, PoolState>();
  readonly #indexes = new Map<string, PoolIndex>();

  /** Throws badRequest on bad default pools. */
  constructor(settings: IpamSettings) {
    this.#defaultsV4 = settings.defaultPoolsV4.map((pool) => checkDefaultPool(pool, false));
    this.#defaultsV6 = settings.defaultPoolsV6.map((pool) => checkDefaultPool(pool, true));
  }

  /** The pool with this ID, or undefined. */
  get(poolId: string): PoolState | undefined {
    return this.#pools.get(poolId);
  }

  /** Every pool, in the order they were requested. */
  pools(): IterableIterator<PoolState> {
    return this.#pools.values();
  }

  /**
   * Reserves an explicit pool, or the first free default subnet when `pool` is empty; returns
   * the new pool.
   */
  request(req: PoolRequest): PoolChange<PoolState> {
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
    const undo = () => {
      this.#pools.delete(state.poolId);
      index.remove(state);
      index.searchFrom = previousFrom;
    };
    return { result: state, undo };
  }

  /**
   * Forgets a pool and every address allocated in it. Returns the undo when `undoable`: it
   * costs a copy of the pool IDs, so it is only made while changes are being recorded.
   */
  release(pool: PoolState, undoable: boolean): (() => void) | undefined {
    const poolId = pool.poolId;
    // Put back in its place on undo: pools() lists pools in the order they were requested.
    const order = undoable ? [...this.#pools.keys()] : [];
    this.#pools.delete(poolId);
    const index = this.#index(pool.addressSpace, pool.prefix.v6);
    index.remove(pool);
    const freed = this.#firstCandidateOverlapping(pool);
    const from = index.searchFrom;
    const undo = () => {
      const pools = new Map(this.#pools);
      this.#pools.clear();
      for (const id of order) {
        const entry = id === poolId ? pool : pools.get(id);
        if (entry !== undefined) this.#pools.set(id, entry);
      }
      index.insert(pool);
      index.searchFrom = from;
    };
    if (
      freed !== undefined &&
      (freed.pool < from.pool || (freed.pool === from.pool && freed.subnet < from.subnet))
    ) {
      index.searchFrom = freed;
    }
    return undoable ? undo : undefined;
  }

  /**
   * Adds a pool read back from a snapshot; throws a plain Error (the caller names the pool)
   * when it overlaps a pool already added.
   */
  restore(pool: PoolState): void {
    const index = this.#index(pool.addressSpace, pool.prefix.v6);
    const clash = index.findOverlap(pool.first, pool.last);
    if (clash !== undefined) throw new Error(`it overlaps pool "${clash.poolId}"`);
    this.#pools.set(pool.poolId, pool);
    index.insert(pool);
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
}

/** The address space itself when Switchyard serves it; throws badRequest otherwise. */
export function checkAddressSpace(addressSpace: string): string {
  if (!ADDRESS_SPACES.includes(addressSpace)) {
    throw badRequest(
      `unknown address space "${addressSpace}": Switchyard serves only ${ADDRESS_SPACES.join(" and ")}`,
    );
  }
  return addressSpace;
}

/** Parses a pool or IP range: a network CIDR of the requested family. */
export function parseNetwork(text: string, v6: boolean, what: string): IpPrefix {
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

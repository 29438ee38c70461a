import { badRequest, conflict, exhausted, type SwitchyardError } from "../errors.ts";
import type { SparseBitmap } from "./bitmap.ts";
import {
  familyName,
  firstAddress,
  formatAddress,
  formatPrefix,
  type IpAddress,
  type IpPrefix,
  lastAddress,
  parseAddressOrPrefix,
  parsePrefix,
  prefixContains,
  prefixContainsAddress,
  prefixSize,
} from "./prefix.ts";
import type { StickyReservations } from "./sticky.ts";

/**
 * One pool's allocation: its address bitmap, the gateway and aux addresses, the IP range that
 * automatic allocation searches, and a sticky pool's addresses kept for container names. Each
 * change returns its undo, so the caller decides whether to record it.
 */

/** A RequestAddress call: `address` bare ("10.0.0.5") or with a length ("10.0.0.5/24"). */
export interface AddressRequest {
  address?: string;
  gateway?: boolean;
  /**
   * Restricts automatic allocation to these CIDRs (the address blocks this host claimed in a
   * multi-host network). An empty list means no address may be chosen automatically.
   */
  within?: readonly string[];
}

/** A read-only view of one pool. */
export interface PoolInfo {
  poolId: string;
  addressSpace: string;
  pool: string;
  subPool?: string;
  v6: boolean;
  /** True when automatic addresses are kept for container names; absent otherwise. */
  sticky?: true;
  allocatedCount: number;
  /**
   * Host addresses (not the network address, nor an IPv4 broadcast) not allocated; a float,
   * inexact beyond 2^53 (large IPv6 pools): for metrics, never for allocation.
   */
  freeCount: number;
}

/** One pool's allocation state; addresses are offsets from the network address. */
export interface PoolState {
  readonly poolId: string;
  readonly addressSpace: string;
  /** Canonical (host bits zero). */
  readonly prefix: IpPrefix;
  readonly subPrefix: IpPrefix | undefined;
  readonly first: bigint;
  readonly last: bigint;
  /**
   * Offsets (from the network address) that may ever be allocated: never the network
   * address (IPv6: the subnet-router anycast address), never the IPv4 broadcast of a <= /30.
   * Empty (first > last) for an IPv4 /32 or an IPv6 /128.
   */
  readonly hostFirst: bigint;
  readonly hostLast: bigint;
  /** Offsets that automatic allocation searches: the sub-pool (or pool) within the hosts. */
  readonly rangeFirst: bigint;
  readonly rangeLast: bigint;
  readonly allocations: SparseBitmap;
  /** Offset of the last address handed out automatically. */
  cursor: bigint | undefined;
  /** A sticky pool's addresses kept for container names; undefined for other pools. */
  readonly sticky: StickyReservations | undefined;
}

/** A change made to a pool: what it returns, and how to take it back. */
export interface PoolChange<T> {
  readonly result: T;
  readonly undo: () => void;
}

/** A pool's state, nothing allocated yet; its ID is the address space, pool and IP range. */
export function newPoolState(
  addressSpace: string,
  prefix: IpPrefix,
  subPrefix: IpPrefix | undefined,
  allocations: SparseBitmap,
  sticky: StickyReservations | undefined,
): PoolState {
  const poolText = formatPrefix(prefix);
  const poolId =
    subPrefix === undefined
      ? `${addressSpace}/${poolText}`
      : `${addressSpace}/${poolText}/${formatPrefix(subPrefix)}`;
  const size = prefixSize(prefix);
  const hostFirst = 1n;
  const hostLast = !prefix.v6 && prefix.length <= 30 ? size - 2n : size - 1n;
  const range = subPrefix ?? prefix;
  const rangeStart = range.address - prefix.address;
  const rangeEnd = rangeStart + prefixSize(range) - 1n;
  return {
    poolId,
    addressSpace,
    prefix,
    subPrefix,
    first: prefix.address,
    last: prefix.address + size - 1n,
    hostFirst,
    hostLast,
    rangeFirst: rangeStart > hostFirst ? rangeStart : hostFirst,
    rangeLast: rangeEnd < hostLast ? rangeEnd : hostLast,
    allocations,
    cursor: undefined,
    sticky,
  };
}

/**
 * Allocates an address and returns it with the pool's length ("10.15.20.5/24").
 * An explicit address may lie anywhere in the pool (outside the IP range too, as Docker
 * allows for --ip, --gateway and --aux-address). A gateway without an address gets the
 * first free host of the whole pool (network+1 unless taken). Otherwise the search runs
 * onward from the last automatic allocation through the IP range and wraps once, so a
 * just-released address is not handed out again at once.
 */
export function allocateAddress(pool: PoolState, req: AddressRequest): PoolChange<string> {
  const cursor = pool.cursor;
  let offset: bigint;
  if (req.address !== undefined && req.address !== "") {
    offset = memberOffset(pool, req.address, "allocate");
    checkAllocatable(pool, offset);
    if (pool.allocations.has(offset)) {
      throw conflict(
        `address ${formatOffset(pool, offset)} is already in use in pool ${formatPrefix(pool.prefix)}`,
      );
    }
  } else if (req.gateway === true) {
    if (pool.hostFirst > pool.hostLast) throw noHostsError(pool, false);
    const found = pool.allocations.findClear(pool.hostFirst, pool.hostLast);
    if (found === undefined) {
      throw exhausted(`no free address left in pool ${formatPrefix(pool.prefix)}`);
    }
    offset = found;
  } else if (req.within !== undefined) {
    offset = findNextFreeWithin(
      pool,
      req.within.map((block) => blockOffsets(pool, block)),
    );
    pool.cursor = offset;
  } else {
    offset = findNextFree(pool, unreserved(pool));
    pool.cursor = offset;
  }
  pool.allocations.set(offset);
  const undo = () => {
    pool.allocations.clear(offset);
    pool.cursor = cursor;
  };
  return { result: `${formatOffset(pool, offset)}/${pool.prefix.length}`, undo };
}

/**
 * An automatic address for a container name in a sticky pool: the one kept for the name when
 * it is free; else the next free address no other name keeps; else, when only kept addresses
 * are free, the least recently used one, taken from its name (`takenFrom`, for the log).
 * The address is then kept for `name`. In a pool that is not sticky, the name is not used.
 */
export function allocateNamedAddress(
  pool: PoolState,
  name: string,
): PoolChange<{ address: string; takenFrom?: string }> {
  const sticky = pool.sticky;
  if (sticky === undefined) {
    const { result: address, undo } = allocateAddress(pool, {});
    return { result: { address }, undo };
  }
  const cursor = pool.cursor;
  const inRange = (offset: bigint) => offset >= pool.rangeFirst && offset <= pool.rangeLast;
  const free = (offset: bigint) => inRange(offset) && !pool.allocations.has(offset);
  const kept = sticky.offsetOf(name);
  let offset: bigint;
  let takenFrom: string | undefined;
  if (kept !== undefined && free(kept)) {
    offset = kept;
  } else {
    const found = findNextFreeOrUndefined(pool, unreserved(pool));
    if (found !== undefined) {
      offset = found;
      pool.cursor = found;
    } else {
      takenFrom = sticky.leastRecentlyUsed(free);
      const taken = takenFrom === undefined ? undefined : sticky.offsetOf(takenFrom);
      if (taken === undefined) throw exhausted(`no free address left in ${describeRange(pool)}`);
      offset = taken;
    }
  }
  pool.allocations.set(offset);
  const undoReserve = sticky.reserve(name, offset);
  const undo = () => {
    undoReserve();
    pool.allocations.clear(offset);
    pool.cursor = cursor;
  };
  const address = `${formatOffset(pool, offset)}/${pool.prefix.length}`;
  return { result: takenFrom === undefined ? { address } : { address, takenFrom }, undo };
}

/**
 * Frees an address; one that is not allocated is fine (Docker retries), one outside is not.
 * Returns the undo, or undefined when nothing changed.
 */
export function freeAddress(pool: PoolState, address: string): (() => void) | undefined {
  const offset = memberOffset(pool, address, "release");
  return pool.allocations.clear(offset) ? () => pool.allocations.set(offset) : undefined;
}

/**
 * True when the address is allocated in the pool; false for one outside it.
 * Throws badRequest for a malformed address.
 */
export function isAddressAllocated(pool: PoolState, address: string): boolean {
  const parsed = parseAddressOrPrefix(address);
  if (!prefixContainsAddress(pool.prefix, parsed)) return false;
  return pool.allocations.has(parsed.value - pool.first);
}

/** A read-only view of the pool. */
export function poolInfo(pool: PoolState): PoolInfo {
  const info: PoolInfo = {
    poolId: pool.poolId,
    addressSpace: pool.addressSpace,
    pool: formatPrefix(pool.prefix),
    v6: pool.prefix.v6,
    allocatedCount: pool.allocations.count,
    freeCount: Math.max(0, Number(pool.hostLast - pool.hostFirst + 1n) - pool.allocations.count),
  };
  if (pool.subPrefix !== undefined) info.subPool = formatPrefix(pool.subPrefix);
  if (pool.sticky !== undefined) info.sticky = true;
  return info;
}

/** The address at an offset of the pool, as text. */
export function formatOffset(pool: PoolState, offset: bigint): string {
  const address: IpAddress = { v6: pool.prefix.v6, value: pool.first + offset };
  return formatAddress(address);
}

/** The offset of an address that must lie in the pool; throws badRequest otherwise. */
function memberOffset(pool: PoolState, text: string, action: string): bigint {
  const address = parseAddressOrPrefix(text);
  const poolText = formatPrefix(pool.prefix);
  if (address.v6 !== pool.prefix.v6) {
    throw badRequest(
      `cannot ${action} address ${formatAddress(address)}: it is ${familyName(address.v6)}, but pool ${poolText} is ${familyName(pool.prefix.v6)}`,
    );
  }
  if (!prefixContainsAddress(pool.prefix, address)) {
    throw badRequest(
      `cannot ${action} address ${formatAddress(address)}: it is outside pool ${poolText}`,
    );
  }
  return address.value - pool.first;
}

/** A block's offsets within the pool, clipped to the automatic range. */
function blockOffsets(pool: PoolState, block: string): { first: bigint; last: bigint } {
  const prefix = parsePrefix(block);
  if (prefix.v6 !== pool.prefix.v6 || !prefixContains(pool.prefix, prefix)) {
    throw badRequest(`address block ${block} is not inside pool ${formatPrefix(pool.prefix)}`);
  }
  const first = firstAddress(prefix) - pool.first;
  const last = lastAddress(prefix) - pool.first;
  // biome-ignore lint/complexity/useMathMinMax: bigints; Math.max does not take them
  const clippedFirst = first > pool.rangeFirst ? first : pool.rangeFirst;
  // biome-ignore lint/complexity/useMathMinMax: bigints; Math.min does not take them
  const clippedLast = last < pool.rangeLast ? last : pool.rangeLast;
  return { first: clippedFirst, last: clippedLast };
}

/** Refuses the addresses no host may have; throws badRequest naming which one it is. */
function checkAllocatable(pool: PoolState, offset: bigint): void {
  const poolText = formatPrefix(pool.prefix);
  if (offset === 0n) {
    const role = pool.prefix.v6 ? "subnet-router anycast address" : "network address";
    throw badRequest(`address ${formatOffset(pool, offset)} is the ${role} of pool ${poolText}`);
  }
  if (offset > pool.hostLast) {
    throw badRequest(
      `address ${formatOffset(pool, offset)} is the broadcast address of pool ${poolText}`,
    );
  }
}

function findNextFree(pool: PoolState, usable?: (offset: bigint) => boolean): bigint {
  const found =
    findNextFreeOrUndefined(pool, usable) ??
    // In a sticky pool, an address kept for a name goes to a request without one only when
    // nothing else is left (its name then gets another address when it comes back).
    (usable === undefined ? undefined : findNextFreeOrUndefined(pool));
  if (found === undefined) {
    throw exhausted(`no free address left in ${describeRange(pool)}`);
  }
  return found;
}

/** The next free offset (passing `usable`) in the IP range after the cursor, wrapping once. */
function findNextFreeOrUndefined(
  pool: PoolState,
  usable: (offset: bigint) => boolean = () => true,
): bigint | undefined {
  if (pool.rangeFirst > pool.rangeLast) throw noHostsError(pool, pool.subPrefix !== undefined);
  const after = pool.cursor === undefined ? pool.rangeFirst : pool.cursor + 1n;
  const start = after >= pool.rangeFirst && after <= pool.rangeLast ? after : pool.rangeFirst;
  const search = (from: bigint, to: bigint): bigint | undefined => {
    for (let at = from; at <= to; ) {
      const found = pool.allocations.findClear(at, to);
      if (found === undefined || usable(found)) return found;
      at = found + 1n;
    }
    return undefined;
  };
  return (
    search(start, pool.rangeLast) ??
    (start > pool.rangeFirst ? search(pool.rangeFirst, start - 1n) : undefined)
  );
}

/** For a sticky pool, a test passing offsets no name keeps; undefined for other pools. */
function unreserved(pool: PoolState): ((offset: bigint) => boolean) | undefined {
  const sticky = pool.sticky;
  if (sticky === undefined || sticky.size === 0) return undefined;
  return (offset) => sticky.holderOf(offset) === undefined;
}

/** Like {@link findNextFree}, but only inside the given offset ranges (onward, then wrapping). */
function findNextFreeWithin(pool: PoolState, ranges: { first: bigint; last: bigint }[]): bigint {
  const after = pool.cursor === undefined ? -1n : pool.cursor;
  const usable = ranges.filter((range) => range.first <= range.last);
  for (const pass of [true, false]) {
    for (const range of usable) {
      const start = pass ? (after + 1n > range.first ? after + 1n : range.first) : range.first;
      if (start > range.last) continue;
      const found = pool.allocations.findClear(start, range.last);
      if (found !== undefined) return found;
    }
  }
  throw exhausted(`no free address left in this host's address blocks of ${describeRange(pool)}`);
}

function noHostsError(pool: PoolState, inRange: boolean): SwitchyardError {
  if (!inRange) {
    return exhausted(
      `pool ${formatPrefix(pool.prefix)} has no usable host address (its one address is the network address)`,
    );
  }
  return exhausted(
    `${describeRange(pool)} has no usable host address (it holds only reserved network or broadcast addresses)`,
  );
}

function describeRange(pool: PoolState): string {
  const poolText = `pool ${formatPrefix(pool.prefix)}`;
  return pool.subPrefix === undefined
    ? poolText
    : `IP range ${formatPrefix(pool.subPrefix)} of ${poolText}`;
}

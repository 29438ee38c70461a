import { internal } from "../errors.ts";
import { type AddressSpaces, checkAddressSpace, parseNetwork } from "./address-space.ts";
import { SparseBitmap } from "./bitmap.ts";
import { formatOffset, newPoolState, type PoolState } from "./pool.ts";
import {
  formatPrefix,
  parseAddressOrPrefix,
  prefixContains,
  prefixContainsAddress,
  prefixSize,
} from "./prefix.ts";
import { StickyReservations, type StickySnapshot } from "./sticky.ts";

/**
 * The allocator's state as plain JSON and back: what the store writes, and what a restart
 * reads to rebuild every pool exactly.
 */

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

/** Every pool of `pools` as a snapshot, keyed by pool ID. */
export function snapshotPools(pools: Iterable<PoolState>): IpamSnapshot {
  const entries: Record<string, PoolSnapshot> = {};
  for (const pool of pools) entries[pool.poolId] = snapshotPool(pool);
  return { version: 1, pools: entries };
}

/** One pool as a snapshot entry. */
export function snapshotPool(pool: PoolState): PoolSnapshot {
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

/**
 * Adds every pool of a snapshot to `spaces`; throws internal naming the pool that cannot be
 * restored (malformed, or overlapping one restored before it).
 */
export function restoreSnapshot(snapshot: IpamSnapshot, spaces: AddressSpaces): void {
  if (snapshot === null || typeof snapshot !== "object" || snapshot.version !== 1) {
    throw internal(
      `cannot restore IPAM state: unsupported snapshot version ${String(snapshot?.version)}`,
    );
  }
  for (const [poolId, entry] of Object.entries(snapshot.pools ?? {})) {
    try {
      const pool = restorePool(entry);
      if (pool.poolId !== poolId) throw new Error(`its fields give the ID "${pool.poolId}"`);
      spaces.restore(pool);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw internal(`cannot restore IPAM state: pool "${poolId}": ${reason}`, error);
    }
  }
}

/** A pool read back from its snapshot entry; throws a plain Error saying what is wrong. */
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

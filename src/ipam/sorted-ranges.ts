/**
 * Searches over address ranges kept sorted by first address and disjoint: the pools of one
 * address space, the host's merged prefixes. One binary search serves both, so "what here is
 * taken, and where does it end?" costs log time wherever it is asked.
 */

/** An inclusive range of addresses (or of offsets). */
export interface AddressRange {
  readonly first: bigint;
  readonly last: bigint;
}

/** The index of the last range starting at or before `address`; -1 when none does. */
export function lastStartingAtOrBefore(sorted: readonly AddressRange[], address: bigint): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((sorted[mid]?.first ?? 0n) <= address) low = mid + 1;
    else high = mid;
  }
  return low - 1;
}

/**
 * The range sharing an address with `[first, last]`: of disjoint ranges, the one that ends
 * last, if several do.
 */
export function findOverlapping<T extends AddressRange>(
  sorted: readonly T[],
  first: bigint,
  last: bigint,
): T | undefined {
  const candidate = sorted[lastStartingAtOrBefore(sorted, last)];
  return candidate !== undefined && candidate.last >= first ? candidate : undefined;
}

import {
  firstAddress,
  formatPrefix,
  type IpPrefix,
  lastAddress,
  networkOf,
  prefixesOverlap,
} from "./prefix.ts";
import { findOverlapping } from "./sorted-ranges.ts";

/** How many host prefixes an exhaustion message names before it says "…". */
const LISTED_MAX = 8;

interface Range {
  first: bigint;
  last: bigint;
}

/**
 * The prefixes in use on the host for one family, merged into sorted disjoint address ranges so
 * the default-pool walk can ask "what here is taken, and where does it end?" in log time.
 */
export class HostRanges {
  readonly #prefixes: readonly IpPrefix[];
  readonly #ranges: readonly Range[];

  private constructor(prefixes: readonly IpPrefix[]) {
    this.#prefixes = prefixes;
    const sorted = prefixes
      .map((prefix) => ({ first: firstAddress(prefix), last: lastAddress(prefix) }))
      .sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
    const merged: Range[] = [];
    for (const range of sorted) {
      const previous = merged.at(-1);
      if (previous !== undefined && range.first <= previous.last + 1n) {
        if (range.last > previous.last) previous.last = range.last;
      } else {
        merged.push({ ...range });
      }
    }
    this.#ranges = merged;
  }

  /**
   * The host prefixes of the family that can block a candidate. A default route (/0) is left
   * out: it covers every address, so counting it would leave no subnet ever free, and it says
   * where traffic leaves the host, not which addresses are used here (Docker ignores it too).
   */
  static of(prefixes: readonly IpPrefix[], v6: boolean): HostRanges {
    return new HostRanges(
      prefixes.filter((prefix) => prefix.v6 === v6 && prefix.length > 0).map(networkOf),
    );
  }

  /** The last address of the host range sharing an address with `[first, last]`, if any. */
  overlapEnd(first: bigint, last: bigint): bigint | undefined {
    return findOverlapping(this.#ranges, first, last)?.last;
  }

  /** The host prefixes that overlap any of `bases`, as text for a message, in input order. */
  blocking(bases: readonly IpPrefix[]): string {
    const texts = [
      ...new Set(
        this.#prefixes
          .filter((prefix) => bases.some((base) => prefixesOverlap(prefix, base)))
          .map(formatPrefix),
      ),
    ];
    return texts.length > LISTED_MAX
      ? `${texts.slice(0, LISTED_MAX).join(", ")}, …`
      : texts.join(", ");
  }
}

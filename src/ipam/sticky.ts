/**
 * Addresses kept for container names in a pool made with `--ipam-opt sticky=true`: a name
 * that comes back (stop/start, `docker rm` + `docker run --name` again, Compose recreate) gets
 * the address it had. Pure: use is ordered by a counter, not a clock, so "least recently used"
 * is the same after a restart.
 */

/** One pool's reservations as plain JSON: each name's offset (decimal) and when it was last used. */
export interface StickySnapshot {
  clock: number;
  names: Record<string, { offset: string; used: number }>;
}

interface Reservation {
  offset: bigint;
  used: number;
}

/** The reservations of one pool: at most one offset per name and one name per offset. */
export class StickyReservations {
  readonly #byName = new Map<string, Reservation>();
  readonly #byOffset = new Map<bigint, string>();
  #clock = 0;

  /** The offset kept for `name`, if any. */
  offsetOf(name: string): bigint | undefined {
    return this.#byName.get(name)?.offset;
  }

  /** The name an offset is kept for, if any. */
  holderOf(offset: bigint): string | undefined {
    return this.#byOffset.get(offset);
  }

  /**
   * Keeps `offset` for `name` (moving the name off any offset it had, and taking the offset from
   * any other name) and marks it as just used. Returns the undo.
   */
  reserve(name: string, offset: bigint): () => void {
    const before = this.#byName.get(name);
    const displaced = this.#byOffset.get(offset);
    const displacedEntry = displaced === undefined ? undefined : this.#byName.get(displaced);
    const clock = this.#clock;
    if (displaced !== undefined && displaced !== name) this.#byName.delete(displaced);
    if (before !== undefined) this.#byOffset.delete(before.offset);
    this.#clock += 1;
    this.#byName.set(name, { offset, used: this.#clock });
    this.#byOffset.set(offset, name);
    return () => {
      this.#byOffset.delete(offset);
      this.#byName.delete(name);
      if (before !== undefined) {
        this.#byName.set(name, before);
        this.#byOffset.set(before.offset, name);
      }
      if (displaced !== undefined && displacedEntry !== undefined && displaced !== name) {
        this.#byName.set(displaced, displacedEntry);
        this.#byOffset.set(offset, displaced);
      }
      this.#clock = clock;
    };
  }

  /** The least recently used name whose offset passes `usable`, if any. */
  leastRecentlyUsed(usable: (offset: bigint) => boolean): string | undefined {
    let best: { name: string; used: number } | undefined;
    for (const [name, entry] of this.#byName) {
      if (!usable(entry.offset)) continue;
      if (best === undefined || entry.used < best.used) best = { name, used: entry.used };
    }
    return best?.name;
  }

  /** How many names hold an address. */
  get size(): number {
    return this.#byName.size;
  }

  snapshot(): StickySnapshot {
    const names: StickySnapshot["names"] = {};
    for (const [name, entry] of this.#byName)
      names[name] = { offset: entry.offset.toString(), used: entry.used };
    return { clock: this.#clock, names };
  }

  /** Rebuilds reservations from a snapshot; `check` refuses an offset outside the pool. */
  static restore(snapshot: StickySnapshot, check: (offset: bigint) => void): StickyReservations {
    const reservations = new StickyReservations();
    if (!Number.isSafeInteger(snapshot.clock) || snapshot.clock < 0)
      throw new Error(`sticky clock ${String(snapshot.clock)} is not a count`);
    for (const [name, entry] of Object.entries(snapshot.names ?? {})) {
      if (!/^[0-9]+$/.test(entry.offset) || !Number.isSafeInteger(entry.used))
        throw new Error(`sticky reservation of "${name}" is malformed`);
      const offset = BigInt(entry.offset);
      check(offset);
      if (reservations.#byOffset.has(offset))
        throw new Error(`sticky offset ${entry.offset} is kept for two names`);
      reservations.#byName.set(name, { offset, used: entry.used });
      reservations.#byOffset.set(offset, name);
    }
    reservations.#clock = snapshot.clock;
    return reservations;
  }
}

/**
 * The allocator's changes since recording began, kept as their inverses so a failed request
 * can be taken back, and the pools they touched, so a store writes only those again.
 */
export class UndoLog {
  /**
   * Inverses of the changes since recording began ({@link savepoint}), newest last: undoing a
   * change costs what the change did, where a copy of every pool would cost the whole host.
   */
  #undo: (() => void)[] | undefined;
  /** Pools changed since the last {@link settle}. */
  readonly #changed = new Set<string>();

  /** True between a {@link savepoint} and the next {@link settle}. */
  get recording(): boolean {
    return this.#undo !== undefined;
  }

  /** Notes a change to a pool, and keeps its undo while recording. */
  record(poolId: string, undo: () => void): void {
    this.#changed.add(poolId);
    this.#undo?.push(undo);
  }

  /** Starts (or continues) recording; returns a mark for {@link rollbackTo}. */
  savepoint(): number {
    this.#undo ??= [];
    return this.#undo.length;
  }

  /** Undoes every change made since the savepoint, newest first. */
  rollbackTo(savepoint: number): void {
    const undo = this.#undo ?? [];
    while (undo.length > savepoint) undo.pop()?.();
  }

  /** The IDs of the pools changed since the last {@link settle}, undone changes included. */
  changedPools(): string[] {
    return [...this.#changed];
  }

  /** Ends recording: the changes so far can no longer be undone, and none counts as changed. */
  settle(): void {
    this.#undo = undefined;
    this.#changed.clear();
  }
}

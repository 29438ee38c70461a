/**
 * Locks by key: requests for one network run one at a time, requests for different networks
 * run side by side. `exclusive` waits for everything in flight and holds off new work, for
 * start-up reconciliation, which must not see half-made endpoints.
 */
export class KeyedLocks {
  readonly #tails = new Map<string, Promise<void>>();
  #inFlight = new Set<Promise<unknown>>();
  #barrier: Promise<void> = Promise.resolve();

  /** Runs `work` once it holds every key (taken in sorted order, so two callers never deadlock). */
  async run<T>(keys: readonly string[], work: () => Promise<T>): Promise<T> {
    await this.#barrier;
    const task = this.#runLocked([...new Set(keys)].sort(), work);
    this.#inFlight.add(task);
    try {
      return await task;
    } finally {
      this.#inFlight.delete(task);
    }
  }

  /** Runs `work` alone: after everything in flight, before anything queued after it. */
  async exclusive<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.#barrier;
    let release: () => void = () => undefined;
    this.#barrier = new Promise((resolve) => {
      release = resolve;
    });
    await previous;
    await Promise.allSettled([...this.#inFlight]);
    try {
      return await work();
    } finally {
      release();
    }
  }

  async #runLocked<T>(keys: string[], work: () => Promise<T>): Promise<T> {
    const releases: (() => void)[] = [];
    for (const key of keys) {
      const previous = this.#tails.get(key) ?? Promise.resolve();
      let release: () => void = () => undefined;
      const mine = new Promise<void>((resolve) => {
        release = resolve;
      });
      const tail = previous.then(() => mine);
      this.#tails.set(key, tail);
      releases.push(() => {
        release();
        if (this.#tails.get(key) === tail) this.#tails.delete(key);
      });
      await previous;
    }
    try {
      return await work();
    } finally {
      for (const release of releases.reverse()) release();
    }
  }
}

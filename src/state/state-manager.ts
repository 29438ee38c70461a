import { internal } from "../errors.ts";
import { Ipam, type IpamSettings } from "../ipam/ipam.ts";
import { BatchLog, Draft } from "./draft.ts";
import { emptyState, type StateDocument } from "./model.ts";
import { byDepth, type RecordChange } from "./records.ts";
import type { Store } from "./store.ts";

/** A pure, synchronous change of the state: no command, socket or etcd call may run in it. */
export type StateChange<T> = (document: StateDocument, ipam: Ipam) => T;

interface Pending {
  change: StateChange<unknown>;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

/**
 * Holds the state in memory and commits changes one at a time, each saved before it is
 * answered. Changes are pure and synchronous: host actions happen before (with an undo) or
 * after a commit, never inside the queue, so one slow command cannot hold up every request.
 * A change sees the document through a copy-on-write {@link Draft} and the allocator records
 * its own undo, so a commit costs what it touched, never what the host holds.
 */
export class StateManager {
  readonly #store: Store;
  readonly #document: StateDocument;
  readonly #ipam: Ipam;
  #pending: Pending[] = [];
  #draining = false;
  /** Resolves when the queue is next empty (for close). */
  #idle: Promise<void> = Promise.resolve();
  #revision = 0;

  private constructor(store: Store, settings: IpamSettings, document: StateDocument) {
    this.#store = store;
    this.#document = document;
    this.#ipam = new Ipam(settings, document.ipam);
  }

  /** Loads the saved state (or starts empty). */
  static async open(store: Store, settings: IpamSettings): Promise<StateManager> {
    return new StateManager(store, settings, (await store.load()) ?? emptyState());
  }

  /**
   * The current document; read it, change it only through `commit`. A record in it is never
   * changed in place (a commit replaces it), so a reference to one stays what it was.
   */
  get document(): Readonly<StateDocument> {
    return this.#document;
  }

  /**
   * Changes whenever a commit changes the document, and again when a failed save puts it back:
   * the key for what is derived from the document and kept (its identity never changes).
   */
  get revision(): number {
    return this.#revision;
  }

  /** The current allocator; change it only through `commit`. */
  get ipam(): Ipam {
    return this.#ipam;
  }

  /**
   * Applies a change and resolves once it is durable. If `change` throws, the state goes back
   * to what it was before it. Changes that arrive while a save runs are saved together (group
   * commit: one fsync for a burst); if that save fails, every change in it fails and the state
   * goes back to the last saved one.
   */
  commit<T>(change: StateChange<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({
        change,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      if (!this.#draining) this.#idle = this.#drain();
    });
  }

  /**
   * What the document would be with `changes` in it: runs them, hands the document to `read`
   * (which must copy what it keeps, records excepted), and takes them out again. A change that
   * throws is left out and passed to `skipped`. Synchronous, so nothing else sees them.
   */
  preview<T>(
    changes: Iterable<(document: StateDocument) => void>,
    read: (document: Readonly<StateDocument>) => T,
    skipped: (error: unknown) => void = () => undefined,
  ): T {
    const drafts: Draft[] = [];
    try {
      for (const change of changes) {
        const draft = new Draft(this.#document);
        drafts.push(draft);
        try {
          change(draft.view);
        } catch (error) {
          draft.rollback();
          skipped(error);
        } finally {
          draft.close();
        }
      }
      return read(this.#document);
    } finally {
      for (const draft of drafts.reverse()) draft.rollback();
    }
  }

  /** At shutdown: waits for the changes in the queue, then lets the store fold its journal. */
  async close(): Promise<void> {
    await this.#idle;
    await this.#store.close?.(this.#document);
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    // Cleared in the same turn as the queue is seen empty, so a commit arriving after that
    // starts a new drain instead of waiting for one that has finished.
    try {
      while (this.#pending.length > 0) await this.#commitBatch(this.#pending.splice(0));
    } finally {
      this.#draining = false;
    }
  }

  async #commitBatch(batch: Pending[]): Promise<void> {
    {
      const log = new BatchLog();
      const ipamMark = this.#ipam.savepoint();
      const outcomes = batch.map((item) => this.#apply(item.change, log));
      this.#revision += 1;
      const changes = log.changes(this.#document);
      const pools = this.#poolChanges(this.#ipam.changedPools());
      changes.push(...pools.changes);
      try {
        if (changes.length > 0) await this.#store.save(this.#document, changes.sort(byDepth));
      } catch (error) {
        log.rollback(this.#document);
        this.#revision += 1;
        this.#ipam.rollbackTo(ipamMark);
        pools.rollback();
        for (const outcome of outcomes)
          if (outcome.ok) Object.assign(outcome, { ok: false, value: error });
      } finally {
        this.#ipam.settle();
      }
      batch.forEach((item, index) => {
        const outcome = outcomes[index];
        if (outcome?.ok) item.resolve(outcome.value);
        else item.reject(outcome?.value);
      });
    }
  }

  /** Runs one change; a throwing one leaves the document and the allocator as it found them. */
  #apply(change: StateChange<unknown>, log: BatchLog): { ok: boolean; value: unknown } {
    const draft = new Draft(this.#document);
    const mark = this.#ipam.savepoint();
    try {
      const value = change(draft.view, this.#ipam);
      if (value instanceof Promise) {
        void value.catch(() => undefined);
        throw internal("a state change must be synchronous (host work belongs outside commit)");
      }
      log.absorb(draft);
      return { ok: true, value: draft.export(value) };
    } catch (error) {
      draft.rollback();
      this.#ipam.rollbackTo(mark);
      return { ok: false, value: error };
    } finally {
      draft.close();
    }
  }

  /**
   * The pools the batch changed, as records: only their snapshots are taken again (a pool's
   * bitmap is a few KiB; every pool of a busy host is megabytes).
   */
  #poolChanges(poolIds: readonly string[]): { changes: RecordChange[]; rollback: () => void } {
    const pools = this.#document.ipam.pools;
    const before = new Map<string, (typeof pools)[string] | undefined>();
    const changes: RecordChange[] = [];
    for (const poolId of poolIds) {
      const previous = pools[poolId];
      const now = this.#ipam.poolSnapshot(poolId);
      if (JSON.stringify(now) === JSON.stringify(previous)) continue;
      before.set(poolId, previous);
      if (now === undefined) delete pools[poolId];
      else pools[poolId] = now;
      changes.push({ path: ["ipam", "pools", poolId], value: now });
    }
    return {
      changes,
      rollback: () => {
        for (const [poolId, previous] of before) {
          if (previous === undefined) delete pools[poolId];
          else pools[poolId] = previous;
        }
      },
    };
  }
}

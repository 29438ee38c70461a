import { internal } from "../errors.ts";
import { Ipam, type IpamSettings } from "../ipam/ipam.ts";
import { emptyState, type StateDocument } from "./model.ts";
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
 */
export class StateManager {
  readonly #store: Store;
  readonly #settings: IpamSettings;
  #document: StateDocument;
  #ipam: Ipam;
  #saved: string;
  #pending: Pending[] = [];
  #draining = false;

  private constructor(store: Store, settings: IpamSettings, document: StateDocument) {
    this.#store = store;
    this.#settings = settings;
    this.#document = document;
    this.#ipam = new Ipam(settings, document.ipam);
    this.#saved = JSON.stringify(document);
  }

  /** Loads the saved state (or starts empty). */
  static async open(store: Store, settings: IpamSettings): Promise<StateManager> {
    return new StateManager(store, settings, (await store.load()) ?? emptyState());
  }

  /** The current document; read it, change it only through `commit`. */
  get document(): Readonly<StateDocument> {
    return this.#document;
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
      if (!this.#draining) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0);
        const outcomes = batch.map((item) => this.#apply(item.change));
        const current = JSON.stringify(this.#document);
        if (current !== this.#saved) {
          try {
            await this.#store.save(this.#document);
            this.#saved = current;
          } catch (error) {
            this.#restore(this.#saved);
            for (const outcome of outcomes)
              if (outcome.ok) Object.assign(outcome, { ok: false, value: error });
          }
        }
        batch.forEach((item, index) => {
          const outcome = outcomes[index];
          if (outcome?.ok) item.resolve(outcome.value);
          else item.reject(outcome?.value);
        });
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Runs one change; a throwing one leaves the document as it found it. */
  #apply(change: StateChange<unknown>): { ok: boolean; value: unknown } {
    const before = JSON.stringify(this.#document);
    try {
      const value = change(this.#document, this.#ipam);
      if (value instanceof Promise) {
        void value.catch(() => undefined);
        throw internal("a state change must be synchronous (host work belongs outside commit)");
      }
      this.#document.ipam = this.#ipam.snapshot();
      return { ok: true, value };
    } catch (error) {
      this.#restore(before);
      return { ok: false, value: error };
    }
  }

  #restore(text: string): void {
    this.#document = JSON.parse(text) as StateDocument;
    this.#ipam = new Ipam(this.#settings, this.#document.ipam);
  }
}

import { Ipam, type IpamSettings } from "../ipam/ipam.ts";
import { emptyState, type StateDocument } from "./model.ts";
import type { Store } from "./store.ts";

/** Holds the state in memory, serialises changes and saves each change before it is answered. */
export class StateManager {
  readonly #store: Store;
  readonly #settings: IpamSettings;
  #document: StateDocument;
  #ipam: Ipam;
  #saved: string;
  #pending: {
    run: (document: StateDocument, ipam: Ipam) => Promise<unknown> | unknown;
    resolve: (value: unknown) => void;
    reject: (reason: unknown) => void;
  }[] = [];
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

  /** The current document; read it, change it only inside `change`. */
  get document(): Readonly<StateDocument> {
    return this.#document;
  }

  /** The current allocator; change it only inside `change`. */
  get ipam(): Ipam {
    return this.#ipam;
  }

  /**
   * Runs one change at a time. If `change` throws, the in-memory state goes back to what it
   * was before it; host-side effects are the caller's to undo. Changes queued while one runs
   * are saved together (group commit: one fsync for a burst of requests), and none is
   * answered before the save that holds it is durable; if that save fails, every change in
   * it fails and the state goes back to the last saved one.
   */
  change<T>(change: (document: StateDocument, ipam: Ipam) => Promise<T> | T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({
        run: change as (document: StateDocument, ipam: Ipam) => Promise<unknown> | unknown,
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
        const outcomes: { ok: boolean; value: unknown }[] = [];
        let current = this.#saved;
        for (const item of batch) {
          try {
            const value = await item.run(this.#document, this.#ipam);
            this.#document.ipam = this.#ipam.snapshot();
            current = JSON.stringify(this.#document);
            outcomes.push({ ok: true, value });
          } catch (error) {
            this.#restore(current);
            outcomes.push({ ok: false, value: error });
          }
        }
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

  #restore(text: string): void {
    this.#document = JSON.parse(text) as StateDocument;
    this.#ipam = new Ipam(this.#settings, this.#document.ipam);
  }
}

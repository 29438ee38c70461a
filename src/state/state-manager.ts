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
  #queue: Promise<unknown> = Promise.resolve();

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
   * Runs one change at a time. If `change` throws, or saving fails, the in-memory state goes
   * back to what it was; host-side effects are the caller's to undo.
   */
  change<T>(change: (document: StateDocument, ipam: Ipam) => Promise<T> | T): Promise<T> {
    const run = async (): Promise<T> => {
      const before = this.#saved;
      try {
        const result = await change(this.#document, this.#ipam);
        this.#document.ipam = this.#ipam.snapshot();
        const text = JSON.stringify(this.#document);
        // Skip the fsync when nothing changed (e.g. an idempotent retry).
        if (text !== before) {
          await this.#store.save(this.#document);
          this.#saved = text;
        }
        return result;
      } catch (error) {
        this.#document = JSON.parse(before) as StateDocument;
        this.#ipam = new Ipam(this.#settings, this.#document.ipam);
        throw error;
      }
    };
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}

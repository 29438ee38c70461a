import type { Logger } from "pino";
import type { EndpointRecord, StateDocument } from "../state/model.ts";
import type { Firewall } from "./firewall.ts";

/** A change of the state that the packet filter must show before it is committed. */
export type PendingChange = (document: StateDocument) => void;

/** The state as far as FirewallSync reads it: the committed state plus changes in flight. */
export interface StatePreview {
  preview<T>(
    changes: Iterable<PendingChange>,
    read: (document: Readonly<StateDocument>) => T,
    skipped?: (error: unknown) => void,
  ): T;
}

/**
 * True when an endpoint has rules of its own in the packet filter: it publishes ports, or it
 * is on a bridge the user made (whose rules name each container's address). Adding or
 * removing any other endpoint leaves the packet filter as it is.
 */
export function inPacketFilter(
  document: Readonly<StateDocument>,
  endpoint: Readonly<EndpointRecord>,
): boolean {
  const owned = document.networks[endpoint.networkId]?.bridgeOwned ?? true;
  return endpoint.ports.length > 0 || !owned;
}

/**
 * What the packet filter is rendered from: every network, the multi-host peers, and only the
 * endpoints {@link inPacketFilter}. Shallow: committed records are never changed in place.
 */
export function firewallView(document: Readonly<StateDocument>): StateDocument {
  const endpoints: Record<string, EndpointRecord> = {};
  for (const [id, endpoint] of Object.entries(document.endpoints)) {
    if (inPacketFilter(document, endpoint)) endpoints[id] = endpoint;
  }
  return {
    version: 1,
    ipam: { version: 1, pools: {} },
    networks: { ...document.networks },
    endpoints,
    // Copied down to the records: the preview puts the originals back once this returns.
    ...(document.cluster === undefined
      ? {}
      : { cluster: { ...document.cluster, networks: { ...document.cluster.networks } } }),
  };
}

/**
 * Keeps the packet filter in step with the state, outside the state queue. Applies are
 * serialised (one `nft` transaction at a time) and coalesced (callers that arrive while one
 * waits share the next), and each renders the committed state plus every change still in
 * flight, so requests for different networks never undo each other's rules.
 */
export class FirewallSync {
  readonly #firewall: Firewall;
  readonly #state: StatePreview;
  readonly #logger: Logger;
  readonly #pending = new Set<PendingChange>();
  #running: Promise<void> = Promise.resolve();
  #next: Promise<void> | undefined;

  constructor(firewall: Firewall, state: StatePreview, logger: Logger) {
    this.#firewall = firewall;
    this.#state = state;
    this.#logger = logger;
  }

  /**
   * Plan → apply → commit for a change the packet filter must show: applies the filter with
   * `change` in it, runs `commit`, and if the commit fails applies the filter without it.
   */
  async around<T>(change: PendingChange, commit: () => Promise<T>): Promise<T> {
    this.#pending.add(change);
    try {
      await this.sync();
    } catch (error) {
      this.#pending.delete(change);
      throw error;
    }
    try {
      return await commit();
    } catch (error) {
      this.#pending.delete(change);
      await this.sync().catch((undoError: unknown) =>
        this.#logger.error(
          { err: undoError },
          "cannot take an uncommitted change out of the packet filter",
        ),
      );
      throw error;
    } finally {
      // Committed: the state itself now holds the change.
      this.#pending.delete(change);
    }
  }

  /** Applies the committed state plus the changes in flight; resolves once that apply ran. */
  sync(): Promise<void> {
    if (this.#next !== undefined) return this.#next;
    const next = this.#running
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.#firewall.apply(this.#view());
      });
    this.#next = next;
    this.#running = next;
    return next;
  }

  /** No copy of the whole state: the changes run copy-on-write and are taken out again. */
  #view(): StateDocument {
    return this.#state.preview(this.#pending, firewallView, (error) =>
      // The change no longer fits the state (its object went meanwhile); its commit will fail.
      this.#logger.debug({ err: error }, "pending change skipped in the packet filter"),
    );
  }
}

import type { Logger } from "pino";
import { internal } from "../errors.ts";
import { TXN_ATTEMPTS, unchangedSince } from "./compares.ts";
import { configKey, isHostsOwn, networkPrefix } from "./keys.ts";
import type { KeyValueStore } from "./kv.ts";

/** A leave etcd has not taken yet: the try in flight, and the timer of the next one. */
interface PendingLeave {
  attempt: Promise<void> | undefined;
  timer: NodeJS.Timeout | undefined;
  failures: number;
}

/**
 * Leaving networks in etcd: this host's registration, names, blocks and static addresses go
 * in one transaction, and a leave etcd does not take stays pending, retried in the background
 * with backoff until it succeeds, is called off (the network joined again), or {@link stop}.
 */
export class PendingLeaves {
  readonly #kv: KeyValueStore;
  readonly #logger: Logger;
  readonly #hostId: string;
  readonly #retryDelay: (failures: number) => number;
  readonly #onLeftLater: () => Promise<void>;
  /** Leaves etcd did not take, retried in the background until it does. */
  readonly #pending = new Map<number, PendingLeave>();

  constructor(deps: {
    kv: KeyValueStore;
    logger: Logger;
    hostId: string;
    /** The wait before the next try after `failures` failed ones. */
    retryDelay: (failures: number) => number;
    /** A leave retried in the background went through at last. */
    onLeftLater: () => Promise<void>;
  }) {
    this.#kv = deps.kv;
    this.#logger = deps.logger;
    this.#hostId = deps.hostId;
    this.#retryDelay = deps.retryDelay;
    this.#onLeftLater = deps.onLeftLater;
  }

  /** Whether any leave is pending (the lease must stay alive for it). */
  get any(): boolean {
    return this.#pending.size > 0;
  }

  /** Networks whose leave etcd has not taken yet, in order. */
  networks(): number[] {
    return [...this.#pending.keys()].sort((a, b) => a - b);
  }

  /**
   * Leaves the network in etcd once `after` has settled (and a try of an earlier leave still in
   * flight); pending from the moment of the call. Rejects when etcd did not take it: it is
   * then retried in the background.
   */
  async leave(vni: number, after: Promise<void>): Promise<void> {
    const previous = this.#pending.get(vni);
    clearTimeout(previous?.timer);
    const pending: PendingLeave = { attempt: undefined, timer: undefined, failures: 0 };
    this.#pending.set(vni, pending);
    await Promise.all([previous?.attempt?.catch(() => undefined), after]);
    await this.#try(vni, pending);
  }

  /** Ends a pending leave of the network (its try in flight, if any, is awaited). */
  async callOff(vni: number): Promise<void> {
    const pending = this.#pending.get(vni);
    if (pending === undefined) return;
    this.#pending.delete(vni);
    clearTimeout(pending.timer);
    await pending.attempt?.catch(() => undefined);
  }

  /** Stops every retry (at shutdown). */
  stop(): void {
    for (const pending of this.#pending.values()) clearTimeout(pending.timer);
    this.#pending.clear();
  }

  /**
   * One try of a pending leave. On failure the next try is scheduled, unless the leave was
   * called off meanwhile; rejects with the failure either way.
   */
  #try(vni: number, pending: PendingLeave): Promise<void> {
    const attempt = (async () => {
      try {
        await this.#leaveInEtcd(vni);
      } catch (error) {
        if (this.#pending.get(vni) === pending) {
          pending.failures += 1;
          pending.timer = setTimeout(
            () => void this.#retry(vni, pending),
            this.#retryDelay(pending.failures),
          );
          pending.timer.unref();
        }
        throw error;
      }
      if (this.#pending.get(vni) === pending) this.#pending.delete(vni);
    })();
    pending.attempt = attempt;
    return attempt;
  }

  async #retry(vni: number, pending: PendingLeave): Promise<void> {
    pending.timer = undefined;
    if (this.#pending.get(vni) !== pending) return;
    try {
      await this.#try(vni, pending);
    } catch (error) {
      this.#logger.debug(
        { err: error, vni, tries: pending.failures },
        "cannot leave the network in etcd yet; retrying",
      );
      return;
    }
    this.#logger.info(
      { vni, tries: pending.failures + 1 },
      "left the multi-host network in etcd, after a leave etcd had not taken",
    );
    await this.#onLeftLater();
  }

  /**
   * Deletes this host's entries of the network in one transaction; when nothing of any other
   * host is left, clears the network (its record too). Fails, and lists again, if another
   * host wrote to the network since it was listed.
   */
  async #leaveInEtcd(vni: number): Promise<void> {
    const base = networkPrefix(vni);
    for (let attempt = 0; ; attempt++) {
      const listing = await this.#kv.snapshot(base);
      const mine = listing.entries.filter((entry) => isHostsOwn(vni, this.#hostId, entry));
      const others = listing.entries.filter(
        (entry) => entry.key !== configKey(vni) && !mine.includes(entry),
      );
      const { succeeded } = await this.#kv.txn(
        others.length === 0
          ? {
              compare: [unchangedSince(base, listing.revision, true)],
              success: [{ type: "delete", key: base, prefix: true }],
            }
          : {
              compare: mine.map((entry) => unchangedSince(entry.key, listing.revision)),
              success: mine.map((entry) => ({ type: "delete", key: entry.key })),
            },
      );
      if (succeeded) break;
      if (attempt >= TXN_ATTEMPTS) {
        throw internal(`cannot leave vxlan.id ${vni}: other hosts kept changing it in etcd`);
      }
    }
  }
}

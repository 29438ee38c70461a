import type { Logger } from "pino";
import type { KeyValueStore } from "./kv.ts";

/** How long the lease outlives its last renewal: a host that stops renewing ages out after it. */
const LEASE_TTL_SECONDS = 15;
/** The longest wait between two tries while etcd does not answer. */
const BACKOFF_CAP_MS = 10_000;

/**
 * How long to wait before the next lease renewal: a third of the TTL while renewals succeed;
 * after failures, 250 ms doubling up to 10 s, and never giving up.
 */
export function renewalDelay(failures: number): number {
  if (failures <= 0) return (LEASE_TTL_SECONDS * 1000) / 3;
  return Math.min(BACKOFF_CAP_MS, 250 * 2 ** Math.min(failures - 1, 16));
}

/**
 * How long to wait before trying again background work etcd refused (a pending leave, a
 * names update): 250 ms doubling up to 10 s after `failures` failed tries.
 */
export function retryDelay(failures: number): number {
  return Math.min(BACKOFF_CAP_MS, 250 * 2 ** Math.min(Math.max(failures, 1) - 1, 16));
}

/**
 * The one etcd lease this host's registrations and names hang on, shared by every network it
 * joins: granted on first use, renewed on a timer until dropped. The renewal itself is the
 * owner's (`renew`), since repairing a lost lease means registering again.
 */
export class SharedLease {
  readonly #kv: KeyValueStore;
  readonly #logger: Logger;
  readonly #renewalDelay: (failures: number) => number;
  readonly #renew: () => Promise<boolean>;
  /** The grant in flight or done, shared so networks joined at once get one lease. */
  #lease: Promise<string> | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  /** Bumped when renewals stop, so a renewal in flight does not schedule the next one. */
  #renewGeneration = 0;

  constructor(deps: {
    kv: KeyValueStore;
    logger: Logger;
    /** The wait before the next renewal after `failures` failed ones. */
    renewalDelay: (failures: number) => number;
    /** What each renewal runs; true when all is in order (the backoff starts over). */
    renew: () => Promise<boolean>;
  }) {
    this.#kv = deps.kv;
    this.#logger = deps.logger;
    this.#renewalDelay = deps.renewalDelay;
    this.#renew = deps.renew;
  }

  /** The lease (granted now if there is none) to put keys on; starts the renewals. */
  get(): Promise<string> {
    if (this.#lease === undefined) {
      const granted = this.#kv.grantLease(LEASE_TTL_SECONDS);
      this.#lease = granted;
      // A failed grant is forgotten, so the next registration or renewal asks again.
      granted.catch(() => {
        if (this.#lease === granted) this.#lease = undefined;
      });
    }
    // Renewals run from the first registration until the last leave (or stop), whatever
    // happens to the lease in between: they are what repairs a lost one.
    this.#startRenewals();
    return this.#lease;
  }

  /**
   * Keeps the lease alive. False when there is none, or etcd no longer knows it (it expired
   * while etcd was away): then it is forgotten, and the next {@link get} grants a new one.
   * Rejects when etcd does not answer (or the grant failed).
   */
  async keepAlive(): Promise<boolean> {
    const current = this.#lease;
    const lease = await current;
    const alive = lease !== undefined && (await this.#kv.keepAlive(lease));
    if (!alive && lease !== undefined) {
      this.#logger.warn("etcd lease expired; registering this host again");
      if (this.#lease === current) this.#lease = undefined;
    }
    return alive;
  }

  /** Renews on a timer: a third of the TTL apart, sooner with backoff after a failure. */
  #startRenewals(): void {
    if (this.#renewTimer !== undefined) return;
    const generation = this.#renewGeneration;
    let failures = 0;
    const tick = async (): Promise<void> => {
      const ok = await this.#renew();
      if (generation !== this.#renewGeneration) return;
      failures = ok ? 0 : failures + 1;
      this.#renewTimer = setTimeout(() => void tick(), this.#renewalDelay(failures));
      this.#renewTimer.unref();
    };
    this.#renewTimer = setTimeout(() => void tick(), this.#renewalDelay(0));
    this.#renewTimer.unref();
  }

  /** Stops the renewals (at shutdown: the lease then ages out). */
  stopRenewals(): void {
    if (this.#renewTimer !== undefined) clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
    this.#renewGeneration += 1;
  }

  /** Stops the renewals and revokes the lease, deleting its keys (etcd away: it expires). */
  async drop(): Promise<void> {
    this.stopRenewals();
    const lease = this.#lease;
    this.#lease = undefined;
    if (lease !== undefined) {
      await lease.then((id) => this.#kv.revokeLease(id)).catch(() => undefined);
    }
  }
}

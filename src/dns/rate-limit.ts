/** How many queries a responder answers: per source address, and from all sources together. */
export interface QueryLimits {
  /** Queries per second one source address may sustain. */
  perSourceRate: number;
  /** Queries one source address may send at once after a quiet spell. */
  perSourceBurst: number;
  /** Queries per second from all sources together. */
  globalRate: number;
  /** Queries at once from all sources together. */
  globalBurst: number;
  /** Source addresses given a bucket of their own; past this the oldest is forgotten. */
  maxSources: number;
}

/**
 * The limits of Switchyard's resolver, which shares its event loop with the answers to
 * dockerd's plugin requests.
 *
 * - Per source, 100 queries/s with bursts of 200: every container on the host asks this
 *   resolver first (the `dns` setting is daemon-wide), and neither glibc nor Docker's embedded
 *   DNS caches, so a busy client asks two queries (A, AAAA) per connection it opens by name;
 *   100/s leaves room for that, 200 for a start-up that resolves everything at once. A client
 *   above it is not answered: it asks its next server after its timeout (4 s in Docker, 5 s in
 *   glibc), and the other containers keep their share.
 * - In all, 5,000 queries/s with bursts of 10,000: a query costs the process about 25 µs of
 *   CPU (receive, parse, look up, encode, send), so at the cap answering takes about an
 *   eighth of a core, while a host of hundreds of containers, every one of whose lookups asks
 *   here first, stays below it. A query dropped over a limit still costs about 12 µs to
 *   receive: the packet filter's own limit per source (`src/firewall/render-resolver.ts`) keeps a
 *   flood from reaching the process at all.
 * - 4,096 sources: more than the containers a host runs; a flood of forged source addresses
 *   only recycles buckets (each new one starts full), while the global bucket still holds.
 */
export const RESOLVER_LIMITS: QueryLimits = {
  perSourceRate: 100,
  perSourceBurst: 200,
  globalRate: 5_000,
  globalBurst: 10_000,
  maxSources: 4_096,
};

interface Bucket {
  tokens: number;
  /** When the bucket was last filled up (ms, on the caller's clock). */
  at: number;
}

/**
 * Token buckets, one per source address and one for all sources. Pure: the caller passes the
 * time, so tests need no clock. A query takes a token from both or from neither, so a source
 * over its own limit never spends the others' share.
 */
export class QueryRateLimiter {
  readonly #limits: QueryLimits;
  readonly #sources = new Map<string, Bucket>();
  /** Made full at the first query, as a source's is. */
  #global: Bucket | undefined;

  constructor(limits: QueryLimits) {
    this.#limits = limits;
  }

  /** Whether a query from `source` at `now` (ms) may be answered; takes its tokens if so. */
  allow(source: string, now: number): boolean {
    const limits = this.#limits;
    let bucket = this.#sources.get(source);
    if (bucket === undefined) {
      // Insertion order: the first key is the source seen longest ago.
      if (this.#sources.size >= limits.maxSources) {
        const oldest = this.#sources.keys().next();
        if (oldest.done !== true) this.#sources.delete(oldest.value);
      }
      bucket = { tokens: limits.perSourceBurst, at: now };
      this.#sources.set(source, bucket);
    }
    this.#global ??= { tokens: limits.globalBurst, at: now };
    const global = this.#global;
    fill(bucket, limits.perSourceRate, limits.perSourceBurst, now);
    fill(global, limits.globalRate, limits.globalBurst, now);
    if (bucket.tokens < 1 || global.tokens < 1) return false;
    bucket.tokens -= 1;
    global.tokens -= 1;
    return true;
  }

  /** How many sources have a bucket (for tests: it never exceeds `maxSources`). */
  get sources(): number {
    return this.#sources.size;
  }
}

/** Adds what `rate` gave since the bucket was last filled, up to `burst`; a clock going back adds nothing. */
function fill(bucket: Bucket, rate: number, burst: number, now: number): void {
  const elapsed = Math.max(0, now - bucket.at);
  bucket.tokens = Math.min(burst, bucket.tokens + (elapsed * rate) / 1000);
  bucket.at = Math.max(bucket.at, now);
}

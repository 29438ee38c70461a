import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type QueryLimits, QueryRateLimiter, RESOLVER_LIMITS } from "../../src/dns/rate-limit.ts";

const TIMEOUT = { timeout: 10_000 };
const LIMITS: QueryLimits = {
  perSourceRate: 100,
  perSourceBurst: 200,
  globalRate: 1_000,
  globalBurst: 2_000,
  maxSources: 3,
};

/** How many of `count` queries from `source` at `now` are allowed. */
function allowed(limiter: QueryRateLimiter, source: string, count: number, now: number): number {
  let yes = 0;
  for (let i = 0; i < count; i++) if (limiter.allow(source, now)) yes += 1;
  return yes;
}

describe("QueryRateLimiter", TIMEOUT, () => {
  it("gives a source its burst at once, then its rate, never more than the burst", TIMEOUT, () => {
    const limiter = new QueryRateLimiter(LIMITS);
    assert.equal(allowed(limiter, "10.60.0.9", 500, 0), 200);
    assert.equal(allowed(limiter, "10.60.0.9", 500, 500), 50, "half a second: 50 tokens");
    assert.equal(allowed(limiter, "10.60.0.9", 500, 60_500), 200, "a minute quiet: the burst");
  });

  it("caps all sources together", TIMEOUT, () => {
    const limiter = new QueryRateLimiter({ ...LIMITS, maxSources: 100 });
    let total = 0;
    for (let source = 0; source < 20; source++)
      total += allowed(limiter, `10.0.0.${source}`, 200, 0);
    assert.equal(total, 2_000);
    assert.equal(allowed(limiter, "10.0.1.1", 10, 1), 1, "1 ms later: one global token");
  });

  it(
    "forgets the oldest source past maxSources, so forged sources cannot grow memory",
    TIMEOUT,
    () => {
      const limiter = new QueryRateLimiter(LIMITS);
      assert.equal(allowed(limiter, "a", 200, 0), 200);
      for (let source = 0; source < 10_000; source++) limiter.allow(`forged-${source}`, 0);
      assert.equal(limiter.sources, 3);
      // "a" was forgotten: it starts again with a full bucket, while the global one holds.
      assert.equal(allowed(limiter, "a", 1, 0), 0, "the global bucket is empty");
    },
  );

  it("adds nothing when the clock goes back", TIMEOUT, () => {
    const limiter = new QueryRateLimiter(LIMITS);
    assert.equal(allowed(limiter, "a", 200, 10_000), 200);
    assert.equal(allowed(limiter, "a", 10, 0), 0);
    assert.equal(allowed(limiter, "a", 10, 10_010), 1, "10 ms after the latest time seen");
  });

  it("ships the limits the issue asked for: 100/s and 200 per source", TIMEOUT, () => {
    assert.equal(RESOLVER_LIMITS.perSourceRate, 100);
    assert.equal(RESOLVER_LIMITS.perSourceBurst, 200);
    assert.ok(RESOLVER_LIMITS.globalRate >= 10 * RESOLVER_LIMITS.perSourceRate);
  });
});

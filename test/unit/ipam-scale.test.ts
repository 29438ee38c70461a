import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultIpamSettings, Ipam, parseDefaultPools } from "../../src/ipam/ipam.ts";

const local = Ipam.localAddressSpace;

/** Runs `step` n times (timing lives in bench/ipam.ts, never in tests). */
function repeat(n: number, step: (i: number) => void): void {
  for (let i = 0; i < n; i++) step(i);
}

/** The address at `offset` from 10.20.0.0. */
const in1020 = (offset: number): string => `10.20.${offset >> 8}.${offset & 255}`;

describe("scale", () => {
  test("60,000 addresses in a /16: each new and in order, small snapshot, churn keeps working", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({ addressSpace: local, pool: "10.20.0.0/16", v6: false });
    // The offsets this test believes are allocated, kept apart from the allocator.
    const allocated = new Set<number>();
    repeat(60_000, (i) => {
      assert.equal(ipam.requestAddress(poolId, {}), `${in1020(i + 1)}/16`);
      allocated.add(i + 1);
    });
    assert.equal(ipam.pool(poolId)?.allocatedCount, 60_000);

    const encoded = JSON.stringify(ipam.snapshot());
    assert.ok(encoded.length < 20_000, `snapshot is ${encoded.length} bytes`);

    // Churn at 60k: release scattered addresses (some twice, 10.20.0.0 never allocated) and
    // take new ones. The search runs onward from 10.20.234.96, so none released comes back.
    repeat(2_000, (i) => {
      const released = ((i * 7) % 200) * 256 + ((i * 13) % 250);
      ipam.releaseAddress(poolId, in1020(released));
      allocated.delete(released);
      assert.equal(ipam.isAllocated(poolId, in1020(released)), false);
      assert.equal(ipam.requestAddress(poolId, {}), `${in1020(60_001 + i)}/16`);
      allocated.add(60_001 + i);
    });
    assert.equal(ipam.pool(poolId)?.allocatedCount, allocated.size);
  });

  test("a full /16 is exhausted after 65,534 and wraps to each released address", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({ addressSpace: local, pool: "10.20.0.0/16", v6: false });
    const full = { kind: "Exhausted", message: "no free address left in pool 10.20.0.0/16" };
    repeat(65_534, (i) => {
      assert.equal(ipam.requestAddress(poolId, {}), `${in1020(i + 1)}/16`);
    });
    assert.equal(ipam.pool(poolId)?.allocatedCount, 65_534);
    assert.throws(() => ipam.requestAddress(poolId, {}), full);
    repeat(500, (i) => {
      const address = `10.20.${i % 256}.${((i * 37) % 254) + 1}`;
      ipam.releaseAddress(poolId, address);
      assert.equal(ipam.requestAddress(poolId, {}), `${address}/16`);
    });
    assert.equal(ipam.pool(poolId)?.allocatedCount, 65_534);
    assert.throws(() => ipam.requestAddress(poolId, {}), full);
  });

  test("1,000 automatic pools, with Docker's reject-and-release pattern stay distinct", () => {
    const ipam = new Ipam({
      defaultPoolsV4: parseDefaultPools("10.0.0.0/8:24"),
      defaultPoolsV6: defaultIpamSettings().defaultPoolsV6,
    });
    const live = { v4: new Set<string>(), v6: new Set<string>() };
    /** Requests a default pool and checks no pool in use has it already. */
    const request = (v6: boolean): { poolId: string; pool: string } => {
      const got = ipam.requestPool({ addressSpace: local, v6 });
      const family = v6 ? live.v6 : live.v4;
      assert.equal(family.has(got.pool), false, `${got.pool} handed out twice`);
      family.add(got.pool);
      return got;
    };
    repeat(1_000, (i) => {
      assert.equal(request(false).pool, `10.${i >> 8}.${i & 255}.0/24`);
    });
    repeat(1_000, () => request(true));
    assert.equal(live.v6.size, 1_000);
    // Every fifth request is rejected by Docker and released afterwards, moving the search
    // back: the next request gets that same pool again.
    let released: string | undefined;
    repeat(200, (i) => {
      const { poolId, pool } = request(false);
      if (released !== undefined) assert.equal(pool, released);
      released = undefined;
      if (i % 5 === 0) {
        ipam.releasePool(poolId);
        live.v4.delete(pool);
        released = pool;
      }
    });
    assert.equal(live.v4.size, 1_000 + 200 - 40);
    const inUse = (v6: boolean) =>
      ipam
        .pools()
        .filter((info) => info.v6 === v6)
        .map((info) => info.pool)
        .sort();
    assert.deepEqual(inUse(false), [...live.v4].sort());
    assert.deepEqual(inUse(true), [...live.v6].sort());
  });

  test("an IPv6 /64 with 10,000 addresses costs a few KB", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId, pool } = ipam.requestPool({ addressSpace: local, v6: true });
    assert.equal(pool, "fd5b:7c1e:ad00::/64");
    repeat(10_000, (i) => {
      assert.equal(ipam.requestAddress(poolId, {}), `fd5b:7c1e:ad00::${(i + 1).toString(16)}/64`);
    });
    assert.equal(ipam.pool(poolId)?.allocatedCount, 10_000);
    const encoded = JSON.stringify(ipam.snapshot());
    assert.ok(encoded.length < 4_000, `snapshot is ${encoded.length} bytes`);
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultIpamSettings, Ipam, parseDefaultPools } from "../../src/ipam/ipam.ts";

const local = Ipam.localAddressSpace;

/** Runs `step` n times (timing lives in bench/ipam.ts, never in tests). */
function repeat(n: number, step: (i: number) => void): void {
  for (let i = 0; i < n; i++) step(i);
}

describe("scale", () => {
  test("60,000 addresses in a /16: small snapshot, churn keeps working", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({ addressSpace: local, pool: "10.20.0.0/16", v6: false });
    repeat(60_000, () => ipam.requestAddress(poolId, {}));
    assert.equal(ipam.pool(poolId)?.allocatedCount, 60_000);

    const encoded = JSON.stringify(ipam.snapshot());
    assert.ok(encoded.length < 20_000, `snapshot is ${encoded.length} bytes`);

    // Churn at 60k: release scattered addresses and take new ones (search runs onward).
    repeat(2_000, (i) => {
      ipam.releaseAddress(poolId, `10.20.${(i * 7) % 200}.${(i * 13) % 250}`);
      ipam.requestAddress(poolId, {});
    });
  });

  test("a nearly full /16 wraps to the released address", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({ addressSpace: local, pool: "10.20.0.0/16", v6: false });
    for (let i = 0; i < 65_534; i++) ipam.requestAddress(poolId, {});
    repeat(500, (i) => {
      const address = `10.20.${i % 256}.${((i * 37) % 254) + 1}`;
      ipam.releaseAddress(poolId, address);
      assert.equal(ipam.requestAddress(poolId, {}), `${address}/16`);
    });
  });

  test("1,000 automatic pools, with Docker's reject-and-release pattern stay distinct", () => {
    const ipam = new Ipam({
      defaultPoolsV4: parseDefaultPools("10.0.0.0/8:24"),
      defaultPoolsV6: defaultIpamSettings().defaultPoolsV6,
    });
    const pools = new Set<string>();
    repeat(1_000, () => pools.add(ipam.requestPool({ addressSpace: local, v6: false }).pool));
    assert.equal(pools.size, 1_000);
    repeat(1_000, () => ipam.requestPool({ addressSpace: local, v6: true }));
    // Every fifth request is rejected by Docker and released afterwards, moving the search back.
    repeat(200, (i) => {
      const { poolId } = ipam.requestPool({ addressSpace: local, v6: false });
      if (i % 5 === 0) ipam.releasePool(poolId);
    });
  });

  test("an IPv6 /64 with 10,000 addresses costs a few KB", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({ addressSpace: local, v6: true });
    for (let i = 0; i < 10_000; i++) ipam.requestAddress(poolId, {});
    const encoded = JSON.stringify(ipam.snapshot());
    assert.ok(encoded.length < 4_000, `snapshot is ${encoded.length} bytes`);
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultIpamSettings, Ipam } from "../../src/ipam/ipam.ts";

/** A fresh allocator holding one pool; returns both. */
function withPool(pool: string, subPool?: string): { ipam: Ipam; poolId: string } {
  const ipam = new Ipam(defaultIpamSettings());
  const { poolId } = ipam.requestPool({
    addressSpace: Ipam.localAddressSpace,
    pool,
    v6: pool.includes(":"),
    ...(subPool === undefined ? {} : { subPool }),
  });
  return { ipam, poolId };
}

const take = (ipam: Ipam, poolId: string, n: number): string[] =>
  Array.from({ length: n }, () => ipam.requestAddress(poolId, {}));

describe("gateway", () => {
  test("without an address it is network+1, even when the IP range starts elsewhere", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24", "10.15.20.128/25");
    assert.equal(ipam.requestAddress(poolId, { gateway: true }), "10.15.20.1/24");
    assert.equal(ipam.requestAddress(poolId, {}), "10.15.20.128/24");
  });

  test("an explicit gateway is taken as given", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24");
    assert.equal(
      ipam.requestAddress(poolId, { gateway: true, address: "10.15.20.254" }),
      "10.15.20.254/24",
    );
    assert.equal(ipam.requestAddress(poolId, {}), "10.15.20.1/24");
  });

  test("when network+1 is taken, the first free host of the pool", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24", "10.15.20.128/25");
    ipam.requestAddress(poolId, { address: "10.15.20.1" });
    assert.equal(ipam.requestAddress(poolId, { gateway: true }), "10.15.20.2/24");
  });

  test("an IPv6 gateway is ::1 of the prefix", () => {
    const { ipam, poolId } = withPool("fd5b:7c1e:ad00::/64");
    assert.equal(ipam.requestAddress(poolId, { gateway: true }), "fd5b:7c1e:ad00::1/64");
  });

  test("a gateway in a full pool is exhausted", () => {
    const { ipam, poolId } = withPool("10.0.0.0/30");
    take(ipam, poolId, 2);
    assert.throws(() => ipam.requestAddress(poolId, { gateway: true }), {
      kind: "Exhausted",
      message: "no free address left in pool 10.0.0.0/30",
    });
  });
});

describe("explicit (static and aux) addresses", () => {
  test("may lie outside the IP range but inside the pool", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24", "10.15.20.128/25");
    assert.equal(ipam.requestAddress(poolId, { address: "10.15.20.5" }), "10.15.20.5/24");
    assert.equal(ipam.requestAddress(poolId, { address: "10.15.20.200" }), "10.15.20.200/24");
    assert.equal(ipam.isAllocated(poolId, "10.15.20.5"), true);
  });

  test("accept the CIDR form", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24");
    assert.equal(ipam.requestAddress(poolId, { address: "10.15.20.5/24" }), "10.15.20.5/24");
    assert.equal(ipam.isAllocated(poolId, "10.15.20.5/24"), true);
  });

  test("do not move the automatic cursor", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24");
    ipam.requestAddress(poolId, { address: "10.15.20.100" });
    assert.equal(ipam.requestAddress(poolId, {}), "10.15.20.1/24");
  });

  test("are skipped by automatic allocation", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24");
    ipam.requestAddress(poolId, { address: "10.15.20.2" });
    assert.deepEqual(take(ipam, poolId, 2), ["10.15.20.1/24", "10.15.20.3/24"]);
  });

  const refused: [name: string, pool: string, address: string, kind: string, message: string][] = [
    [
      "in use",
      "10.15.20.0/24",
      "10.15.20.200",
      "Conflict",
      "address 10.15.20.200 is already in use in pool 10.15.20.0/24",
    ],
    [
      "the network address",
      "10.15.20.0/24",
      "10.15.20.0",
      "BadRequest",
      "address 10.15.20.0 is the network address of pool 10.15.20.0/24",
    ],
    [
      "the broadcast address",
      "10.15.20.0/24",
      "10.15.20.255",
      "BadRequest",
      "address 10.15.20.255 is the broadcast address of pool 10.15.20.0/24",
    ],
    [
      "the broadcast address of a /30",
      "10.0.0.0/30",
      "10.0.0.3",
      "BadRequest",
      "address 10.0.0.3 is the broadcast address of pool 10.0.0.0/30",
    ],
    [
      "the network address of a /32",
      "10.0.0.5/32",
      "10.0.0.5",
      "BadRequest",
      "address 10.0.0.5 is the network address of pool 10.0.0.5/32",
    ],
    [
      "the IPv6 subnet-router anycast address",
      "fd00::/64",
      "fd00::",
      "BadRequest",
      "address fd00:: is the subnet-router anycast address of pool fd00::/64",
    ],
    [
      "outside the pool",
      "10.15.20.0/24",
      "10.15.21.5",
      "BadRequest",
      "cannot allocate address 10.15.21.5: it is outside pool 10.15.20.0/24",
    ],
    [
      "of the other family",
      "10.15.20.0/24",
      "fd00::5",
      "BadRequest",
      "cannot allocate address fd00::5: it is IPv6, but pool 10.15.20.0/24 is IPv4",
    ],
    ["malformed", "10.15.20.0/24", "10.15.20.x", "BadRequest", 'invalid IP address "10.15.20.x"'],
    [
      "with a bad length",
      "10.15.20.0/24",
      "10.15.20.5/40",
      "BadRequest",
      'invalid CIDR "10.15.20.5/40": prefix length must be 0-32 for IPv4',
    ],
  ];
  for (const [name, pool, address, kind, message] of refused) {
    test(`refuses one ${name}`, () => {
      const { ipam, poolId } = withPool(pool);
      if (kind === "Conflict") ipam.requestAddress(poolId, { address });
      const before = ipam.snapshot();
      assert.throws(() => ipam.requestAddress(poolId, { address }), { kind, message });
      assert.throws(() => ipam.requestAddress(poolId, { address, gateway: true }), {
        kind,
        message,
      });
      assert.deepEqual(ipam.snapshot(), before);
    });
  }

  test("IPv4 /31 and IPv6 last addresses are ordinary hosts", () => {
    const a = withPool("10.0.0.0/31");
    assert.equal(a.ipam.requestAddress(a.poolId, { address: "10.0.0.1" }), "10.0.0.1/31");
    const b = withPool("fd00::/64");
    assert.equal(
      b.ipam.requestAddress(b.poolId, { address: "fd00::ffff:ffff:ffff:ffff" }),
      "fd00::ffff:ffff:ffff:ffff/64",
    );
  });

  test("unknown pool", () => {
    const { ipam } = withPool("10.15.20.0/24");
    assert.throws(() => ipam.requestAddress("LocalDefault/10.0.0.0/8", {}), {
      kind: "NotFound",
      message: 'no such pool "LocalDefault/10.0.0.0/8"',
    });
  });
});

describe("automatic addresses", () => {
  test("start at network+1 and never hand out network or broadcast", () => {
    const { ipam, poolId } = withPool("10.0.0.0/29");
    assert.deepEqual(take(ipam, poolId, 6), [
      "10.0.0.1/29",
      "10.0.0.2/29",
      "10.0.0.3/29",
      "10.0.0.4/29",
      "10.0.0.5/29",
      "10.0.0.6/29",
    ]);
    const before = ipam.snapshot();
    assert.throws(() => ipam.requestAddress(poolId, {}), {
      kind: "Exhausted",
      message: "no free address left in pool 10.0.0.0/29",
    });
    assert.deepEqual(ipam.snapshot(), before);
  });

  test("a /29 with a /30 IP range: the range runs out, aux addresses still fit", () => {
    const { ipam, poolId } = withPool("10.0.0.0/29", "10.0.0.4/30");
    assert.equal(ipam.requestAddress(poolId, { gateway: true }), "10.0.0.1/29");
    // The range's last address is the pool's broadcast address, so only .4 to .6 are offered.
    assert.deepEqual(take(ipam, poolId, 3), ["10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29"]);
    assert.throws(() => ipam.requestAddress(poolId, {}), {
      kind: "Exhausted",
      message: "no free address left in IP range 10.0.0.4/30 of pool 10.0.0.0/29",
    });
    assert.equal(ipam.requestAddress(poolId, { address: "10.0.0.2" }), "10.0.0.2/29");
  });

  test("a /29 with a /30 IP range at its start skips the network address", () => {
    const { ipam, poolId } = withPool("10.0.0.0/29", "10.0.0.0/30");
    assert.deepEqual(take(ipam, poolId, 3), ["10.0.0.1/29", "10.0.0.2/29", "10.0.0.3/29"]);
    assert.throws(() => ipam.requestAddress(poolId, {}), { kind: "Exhausted" });
  });

  test("an IP range holding only reserved addresses says so", () => {
    const { ipam, poolId } = withPool("10.0.0.0/24", "10.0.0.255/32");
    assert.throws(() => ipam.requestAddress(poolId, {}), {
      kind: "Exhausted",
      message:
        "IP range 10.0.0.255/32 of pool 10.0.0.0/24 has no usable host address (it holds only reserved network or broadcast addresses)",
    });
    assert.equal(ipam.requestAddress(poolId, { gateway: true }), "10.0.0.1/24");
  });

  test("a /32 pool has no usable host address", () => {
    const { ipam, poolId } = withPool("10.0.0.5/32");
    const message =
      "pool 10.0.0.5/32 has no usable host address (its one address is the network address)";
    assert.throws(() => ipam.requestAddress(poolId, {}), { kind: "Exhausted", message });
    assert.throws(() => ipam.requestAddress(poolId, { gateway: true }), {
      kind: "Exhausted",
      message,
    });
  });

  test("a /31 pool offers its second address only", () => {
    const { ipam, poolId } = withPool("10.0.0.0/31");
    assert.deepEqual(take(ipam, poolId, 1), ["10.0.0.1/31"]);
    assert.throws(() => ipam.requestAddress(poolId, {}), { kind: "Exhausted" });
  });

  test("release-then-reallocate goes onward and wraps only at the end", () => {
    const { ipam, poolId } = withPool("10.0.0.0/29");
    assert.deepEqual(take(ipam, poolId, 3), ["10.0.0.1/29", "10.0.0.2/29", "10.0.0.3/29"]);
    ipam.releaseAddress(poolId, "10.0.0.2");
    assert.deepEqual(take(ipam, poolId, 3), ["10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29"]);
    assert.deepEqual(take(ipam, poolId, 1), ["10.0.0.2/29"], "wrapped to the only free address");
    ipam.releaseAddress(poolId, "10.0.0.5/29");
    ipam.releaseAddress(poolId, "10.0.0.1");
    assert.deepEqual(take(ipam, poolId, 2), ["10.0.0.5/29", "10.0.0.1/29"]);
  });

  test("the cursor wraps within the IP range, not the pool", () => {
    const { ipam, poolId } = withPool("10.0.0.0/24", "10.0.0.16/30");
    assert.deepEqual(take(ipam, poolId, 4), [
      "10.0.0.16/24",
      "10.0.0.17/24",
      "10.0.0.18/24",
      "10.0.0.19/24",
    ]);
    ipam.releaseAddress(poolId, "10.0.0.17");
    assert.deepEqual(take(ipam, poolId, 1), ["10.0.0.17/24"]);
  });

  test("IPv6 /64: ::1 first, nothing materialised for the rest", () => {
    const { ipam, poolId } = withPool("fd5b:7c1e:ad00::/64");
    assert.deepEqual(take(ipam, poolId, 3), [
      "fd5b:7c1e:ad00::1/64",
      "fd5b:7c1e:ad00::2/64",
      "fd5b:7c1e:ad00::3/64",
    ]);
    ipam.requestAddress(poolId, { address: "fd5b:7c1e:ad00:0:ffff:ffff:ffff:fffe" });
    assert.equal(ipam.pool(poolId)?.allocatedCount, 4);
    const allocated = ipam.snapshot().pools[poolId]?.allocated ?? {};
    assert.deepEqual(Object.keys(allocated), ["0", String((1n << 64n) / 4096n - 1n)]);
  });

  test("IPv6 /64 with an IP range near the end wraps within it", () => {
    const { ipam, poolId } = withPool("fd00::/64", "fd00::ffff:ffff:ffff:fffc/126");
    assert.deepEqual(take(ipam, poolId, 4), [
      "fd00::ffff:ffff:ffff:fffc/64",
      "fd00::ffff:ffff:ffff:fffd/64",
      "fd00::ffff:ffff:ffff:fffe/64",
      "fd00::ffff:ffff:ffff:ffff/64",
    ]);
    assert.throws(() => ipam.requestAddress(poolId, {}), {
      kind: "Exhausted",
      message: "no free address left in IP range fd00::ffff:ffff:ffff:fffc/126 of pool fd00::/64",
    });
  });

  test("IPv6 /120: 255 addresses, ::0 excluded, the last one included", () => {
    const { ipam, poolId } = withPool("fd00::/120");
    const got = take(ipam, poolId, 255);
    assert.equal(got[0], "fd00::1/120");
    assert.equal(got[254], "fd00::ff/120");
    assert.equal(new Set(got).size, 255);
    assert.throws(() => ipam.requestAddress(poolId, {}), {
      kind: "Exhausted",
      message: "no free address left in pool fd00::/120",
    });
  });
});

describe("releaseAddress", () => {
  test("frees the address", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24");
    ipam.requestAddress(poolId, { address: "10.15.20.9" });
    ipam.releaseAddress(poolId, "10.15.20.9");
    assert.equal(ipam.isAllocated(poolId, "10.15.20.9"), false);
    assert.equal(ipam.pool(poolId)?.allocatedCount, 0);
  });

  test("an address that is not allocated is a success (Docker retries) and changes nothing", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24");
    assert.equal(ipam.requestAddress(poolId, {}), "10.15.20.1/24");
    assert.equal(ipam.requestAddress(poolId, { address: "10.15.20.8" }), "10.15.20.8/24");
    ipam.releaseAddress(poolId, "10.15.20.8");
    const before = ipam.snapshot();
    // A retried release, a never-allocated neighbour, and the reserved network and broadcast.
    for (const address of ["10.15.20.8", "10.15.20.9", "10.15.20.0", "10.15.20.255"]) {
      ipam.releaseAddress(poolId, address);
      assert.equal(ipam.isAllocated(poolId, address), false, address);
    }
    assert.deepEqual(ipam.snapshot(), before);
    assert.equal(ipam.pool(poolId)?.allocatedCount, 1);
    assert.equal(ipam.isAllocated(poolId, "10.15.20.1"), true);
    // The reserved addresses stay reserved and the search still runs on from 10.15.20.1.
    assert.throws(() => ipam.requestAddress(poolId, { address: "10.15.20.0" }), {
      kind: "BadRequest",
    });
    assert.throws(() => ipam.requestAddress(poolId, { address: "10.15.20.255" }), {
      kind: "BadRequest",
    });
    assert.equal(ipam.requestAddress(poolId, {}), "10.15.20.2/24");
    assert.equal(ipam.pool(poolId)?.allocatedCount, 2);
  });

  const refused: [name: string, poolId: string | undefined, address: string, kind: string][] = [
    ["an unknown pool", "LocalDefault/10.9.9.0/24", "10.9.9.9", "NotFound"],
    ["an address outside the pool", undefined, "10.15.21.9", "BadRequest"],
    ["an address of the other family", undefined, "fd00::9", "BadRequest"],
    ["a malformed address", undefined, "ten", "BadRequest"],
  ];
  for (const [name, poolId, address, kind] of refused) {
    test(`refuses ${name}`, () => {
      const pool = withPool("10.15.20.0/24");
      assert.throws(() => pool.ipam.releaseAddress(poolId ?? pool.poolId, address), { kind });
    });
  }

  test("the message for an address outside names both", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24");
    assert.throws(() => ipam.releaseAddress(poolId, "10.15.21.9"), {
      message: "cannot release address 10.15.21.9: it is outside pool 10.15.20.0/24",
    });
  });
});

describe("isAllocated", () => {
  test("answers for addresses inside, false outside, throws for unknown pools", () => {
    const { ipam, poolId } = withPool("10.15.20.0/24");
    ipam.requestAddress(poolId, {});
    assert.equal(ipam.isAllocated(poolId, "10.15.20.1"), true);
    assert.equal(ipam.isAllocated(poolId, "10.15.20.2"), false);
    assert.equal(ipam.isAllocated(poolId, "10.15.21.1"), false);
    assert.equal(ipam.isAllocated(poolId, "fd00::1"), false);
    assert.throws(() => ipam.isAllocated("LocalDefault/1.0.0.0/8", "1.0.0.1"), {
      kind: "NotFound",
    });
    assert.throws(() => ipam.isAllocated(poolId, "x"), { kind: "BadRequest" });
  });
});

describe("allocation within claimed blocks (multi-host networks)", () => {
  test("hands out addresses only inside the given blocks, onward, and says when they are full", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({
      addressSpace: "LocalDefault",
      pool: "10.60.0.0/24",
      v6: false,
    });
    assert.equal(ipam.requestAddress(poolId, { gateway: true }), "10.60.0.1/24");
    const blocks = ["10.60.0.64/30", "10.60.0.192/31"];
    const got = [1, 2, 3, 4, 5, 6].map(() => ipam.requestAddress(poolId, { within: blocks }));
    assert.deepEqual(got, [
      "10.60.0.64/24",
      "10.60.0.65/24",
      "10.60.0.66/24",
      "10.60.0.67/24",
      "10.60.0.192/24",
      "10.60.0.193/24",
    ]);
    assert.throws(
      () => ipam.requestAddress(poolId, { within: blocks }),
      /this host's address blocks/,
    );
    assert.throws(() => ipam.requestAddress(poolId, { within: [] }), /this host's address blocks/);
    ipam.releaseAddress(poolId, "10.60.0.65");
    assert.equal(ipam.requestAddress(poolId, { within: blocks }), "10.60.0.65/24");
    assert.throws(
      () => ipam.requestAddress(poolId, { within: ["10.61.0.0/30"] }),
      /not inside pool/,
    );
  });

  test("never hands out the network address of the first block", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({
      addressSpace: "LocalDefault",
      pool: "10.60.0.0/24",
      v6: false,
    });
    ipam.requestAddress(poolId, { gateway: true });
    assert.equal(ipam.requestAddress(poolId, { within: ["10.60.0.0/30"] }), "10.60.0.2/24");
  });
});

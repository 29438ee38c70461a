import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  defaultIpamSettings,
  Ipam,
  type IpamSettings,
  type PoolRequest,
  parseDefaultPools,
} from "../../src/ipam/ipam.ts";
import { parsePrefix } from "../../src/ipam/prefix.ts";

const local = Ipam.localAddressSpace;
const global = Ipam.globalAddressSpace;
const v4 = (pool?: string, subPool?: string): PoolRequest => ({
  addressSpace: local,
  v6: false,
  ...(pool === undefined ? {} : { pool }),
  ...(subPool === undefined ? {} : { subPool }),
});
const v6 = (pool?: string, subPool?: string): PoolRequest => ({ ...v4(pool, subPool), v6: true });
const settings = (v4Pools: string, v6Pools = ""): IpamSettings => ({
  defaultPoolsV4: parseDefaultPools(v4Pools),
  defaultPoolsV6: parseDefaultPools(v6Pools),
});

describe("explicit pools", () => {
  test("a pool gets an ID of address space and canonical CIDR", () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.deepEqual(ipam.requestPool(v4("10.15.20.0/24")), {
      poolId: "LocalDefault/10.15.20.0/24",
      pool: "10.15.20.0/24",
    });
    assert.deepEqual(ipam.requestPool(v6("FD00:0:0:0::/64")), {
      poolId: "LocalDefault/fd00::/64",
      pool: "fd00::/64",
    });
  });

  test("a sub-pool is appended to the ID", () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.deepEqual(ipam.requestPool(v4("10.15.20.0/24", "10.15.20.128/25")), {
      poolId: "LocalDefault/10.15.20.0/24/10.15.20.128/25",
      pool: "10.15.20.0/24",
    });
    assert.deepEqual(ipam.pool("LocalDefault/10.15.20.0/24/10.15.20.128/25"), {
      poolId: "LocalDefault/10.15.20.0/24/10.15.20.128/25",
      addressSpace: "LocalDefault",
      pool: "10.15.20.0/24",
      subPool: "10.15.20.128/25",
      v6: false,
      allocatedCount: 0,
      freeCount: 254,
    });
  });

  test("empty pool and sub-pool strings (as the wire sends them) mean none", () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(ipam.requestPool({ ...v4(), pool: "", subPool: "" }).pool, "172.17.0.0/16");
  });

  test("prefixes from /0 to /32 are accepted", () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(ipam.requestPool(v4("10.0.0.5/32")).pool, "10.0.0.5/32");
    assert.equal(ipam.requestPool({ ...v4("0.0.0.0/0"), addressSpace: global }).pool, "0.0.0.0/0");
  });

  const refused: [name: string, req: PoolRequest, kind: string, message: string][] = [
    [
      "host bits set",
      v4("10.15.20.5/24"),
      "BadRequest",
      '"10.15.20.5/24" is not a network address; did you mean 10.15.20.0/24?',
    ],
    [
      "IPv6 host bits set",
      v6("fd00::1/64"),
      "BadRequest",
      '"fd00::1/64" is not a network address; did you mean fd00::/64?',
    ],
    [
      "an invalid CIDR",
      v4("10.0.0.0/33"),
      "BadRequest",
      'invalid CIDR "10.0.0.0/33": prefix length must be 0-32 for IPv4',
    ],
    [
      "a bare address",
      v4("10.0.0.0"),
      "BadRequest",
      'invalid CIDR "10.0.0.0": missing "/prefix-length"',
    ],
    [
      "an IPv4 pool in an IPv6 request",
      v6("10.0.0.0/24"),
      "BadRequest",
      "pool 10.0.0.0/24 is IPv4, but the request is for IPv6",
    ],
    [
      "an IPv6 pool in an IPv4 request",
      v4("fd00::/64"),
      "BadRequest",
      "pool fd00::/64 is IPv6, but the request is for IPv4",
    ],
    [
      "a sub-pool outside the pool",
      v4("10.15.20.0/24", "10.15.21.0/25"),
      "BadRequest",
      "IP range 10.15.21.0/25 is not inside pool 10.15.20.0/24",
    ],
    [
      "a sub-pool larger than the pool",
      v4("10.15.20.0/24", "10.15.0.0/16"),
      "BadRequest",
      "IP range 10.15.0.0/16 is not inside pool 10.15.20.0/24",
    ],
    [
      "a sub-pool with host bits",
      v4("10.15.20.0/24", "10.15.20.130/25"),
      "BadRequest",
      '"10.15.20.130/25" is not a network address; did you mean 10.15.20.128/25?',
    ],
    [
      "a sub-pool of the other family",
      v4("10.15.20.0/24", "fd00::/120"),
      "BadRequest",
      "IP range fd00::/120 is IPv6, but the request is for IPv4",
    ],
    [
      "a sub-pool without a pool",
      v4(undefined, "10.15.20.0/25"),
      "BadRequest",
      "cannot use IP range 10.15.20.0/25 without a subnet: give the subnet too",
    ],
    [
      "an unknown address space",
      { ...v4("10.0.0.0/24"), addressSpace: "Elsewhere" },
      "BadRequest",
      'unknown address space "Elsewhere": Switchyard serves only LocalDefault and GlobalDefault',
    ],
  ];
  for (const [name, req, kind, message] of refused) {
    test(`refuses ${name}`, () => {
      const ipam = new Ipam(defaultIpamSettings());
      assert.throws(() => ipam.requestPool(req), { kind, message });
      assert.deepEqual(ipam.pools(), []);
    });
  }
});

describe("overlap refusal", () => {
  const existing = "10.15.20.0/24";
  const cases: [requested: PoolRequest, overlaps: boolean][] = [
    [v4("10.15.0.0/16"), true],
    [v4("10.15.20.128/25"), true],
    [v4("10.15.20.0/24"), true],
    [v4("10.15.20.0/24", "10.15.20.0/25"), true],
    [v4("10.15.20.255/32"), true],
    [v4("0.0.0.0/0"), true],
    [v4("10.15.21.0/24"), false],
    [v4("10.15.19.0/24"), false],
    [{ ...v4("10.15.20.0/24"), addressSpace: global }, false],
    [v6("::a0f:1400/120"), false],
  ];
  for (const [req, overlaps] of cases) {
    test(`${req.addressSpace} ${req.pool}${req.subPool ? ` ${req.subPool}` : ""} ${overlaps ? "is refused" : "is fine"}`, () => {
      const ipam = new Ipam(defaultIpamSettings());
      ipam.requestPool(v4(existing));
      if (overlaps) {
        assert.throws(() => ipam.requestPool(req), {
          kind: "Conflict",
          message: `pool ${req.pool} overlaps ${existing} already in use`,
        });
        assert.equal(ipam.pools().length, 1);
      } else {
        ipam.requestPool(req);
        assert.equal(ipam.pools().length, 2);
      }
    });
  }

  test("the message names the pool actually overlapped among many", () => {
    const ipam = new Ipam(defaultIpamSettings());
    for (const pool of ["10.0.0.0/24", "10.0.2.0/24", "10.0.4.0/24", "10.0.6.0/24"]) {
      ipam.requestPool(v4(pool));
    }
    assert.throws(() => ipam.requestPool(v4("10.0.4.128/25")), {
      message: "pool 10.0.4.128/25 overlaps 10.0.4.0/24 already in use",
    });
    assert.equal(ipam.requestPool(v4("10.0.3.0/24")).pool, "10.0.3.0/24", "a gap is free");
  });

  test("a released pool can be requested again", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool(v4("10.15.20.0/24"));
    ipam.releasePool(poolId);
    assert.deepEqual(ipam.requestPool(v4("10.15.0.0/16")).pool, "10.15.0.0/16");
  });
});

describe("releasePool", () => {
  test("unknown and already-released pools are notFound", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool(v4("10.15.20.0/24"));
    assert.throws(() => ipam.releasePool("LocalDefault/10.9.9.0/24"), {
      kind: "NotFound",
      message: 'no such pool "LocalDefault/10.9.9.0/24"',
    });
    ipam.releasePool(poolId);
    assert.throws(() => ipam.releasePool(poolId), { kind: "NotFound" });
    assert.equal(ipam.pool(poolId), undefined);
  });

  test("releasing a pool drops its allocations", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool(v4("10.15.20.0/24"));
    ipam.requestAddress(poolId, { gateway: true });
    ipam.requestAddress(poolId, {});
    ipam.releasePool(poolId);
    ipam.requestPool(v4("10.15.20.0/24"));
    assert.equal(ipam.pool(poolId)?.allocatedCount, 0);
    assert.equal(ipam.requestAddress(poolId, {}), "10.15.20.1/24");
  });
});

describe("automatic pools", () => {
  test("follow Docker's default sequence, then run out", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const got = Array.from({ length: 31 }, () => ipam.requestPool(v4()).pool);
    const expected = [
      ...Array.from({ length: 15 }, (_, i) => `172.${17 + i}.0.0/16`),
      ...Array.from({ length: 16 }, (_, i) => `192.168.${16 * i}.0/20`),
    ];
    assert.deepEqual(got, expected);
    const before = ipam.snapshot();
    assert.throws(() => ipam.requestPool(v4()), {
      kind: "Exhausted",
      message:
        /^cannot allocate an IPv4 pool in LocalDefault: every subnet of the default pools is in use \(172\.17\.0\.0\/16:16, .*, 192\.168\.0\.0\/16:20\)$/,
    });
    assert.deepEqual(ipam.snapshot(), before);
  });

  test("IPv6 pools come from fd5b:7c1e:ad00::/40 as /64s", () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.deepEqual(ipam.requestPool(v6()), {
      poolId: "LocalDefault/fd5b:7c1e:ad00::/64",
      pool: "fd5b:7c1e:ad00::/64",
    });
    assert.equal(ipam.requestPool(v6()).pool, "fd5b:7c1e:ad00:1::/64");
    ipam.requestPool(v6("fd5b:7c1e:ad00:2::/63"));
    assert.equal(ipam.requestPool(v6()).pool, "fd5b:7c1e:ad00:4::/64");
  });

  test("skip explicit pools that overlap a candidate, whatever their size", () => {
    const ipam = new Ipam(defaultIpamSettings());
    ipam.requestPool(v4("172.17.5.0/24"));
    ipam.requestPool(v4("172.18.0.0/15")); // covers 172.18 and 172.19
    ipam.requestPool(v4("172.21.255.255/32"));
    assert.equal(ipam.requestPool(v4()).pool, "172.20.0.0/16");
    assert.equal(ipam.requestPool(v4()).pool, "172.22.0.0/16");
  });

  test("repeated calls while Docker rejects the answers return distinct pools", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const rejected = Array.from({ length: 5 }, () => ipam.requestPool(v4()));
    assert.equal(new Set(rejected.map((r) => r.pool)).size, 5);
    // Docker keeps the accepted answer and releases the rejected ones afterwards.
    for (const { poolId } of rejected.slice(0, 4)) ipam.releasePool(poolId);
    assert.equal(ipam.requestPool(v4()).pool, "172.17.0.0/16", "released pools are free again");
    assert.equal(ipam.requestPool(v4()).pool, "172.18.0.0/16");
  });

  test("address spaces and families are independent", () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(ipam.requestPool(v4()).pool, "172.17.0.0/16");
    assert.equal(ipam.requestPool({ ...v4(), addressSpace: global }).pool, "172.17.0.0/16");
    assert.equal(ipam.requestPool(v6()).pool, "fd5b:7c1e:ad00::/64");
    assert.equal(ipam.requestPool(v4()).pool, "172.18.0.0/16");
  });

  test("custom defaults, including overlapping ones, are walked in order", () => {
    const ipam = new Ipam(settings("10.10.0.0/30:31,10.10.0.0/29:30"));
    assert.deepEqual(
      Array.from({ length: 3 }, () => ipam.requestPool(v4()).pool),
      ["10.10.0.0/31", "10.10.0.2/31", "10.10.0.4/30"],
    );
    assert.throws(() => ipam.requestPool(v4()), { kind: "Exhausted" });
  });

  test("no default pools configured", () => {
    const ipam = new Ipam(settings("10.0.0.0/8:24"));
    assert.throws(() => ipam.requestPool(v6()), {
      kind: "Exhausted",
      message:
        "cannot allocate an IPv6 pool in LocalDefault: no IPv6 default pools are configured; give a subnet",
    });
  });

  test("after exhaustion, a released pool is found again", () => {
    const ipam = new Ipam(settings("10.0.0.0/23:24"));
    const a = ipam.requestPool(v4());
    ipam.requestPool(v4());
    assert.throws(() => ipam.requestPool(v4()), { kind: "Exhausted" });
    ipam.releasePool(a.poolId);
    assert.equal(ipam.requestPool(v4()).pool, "10.0.0.0/24");
  });
});

describe("default pool settings", () => {
  test("defaultIpamSettings matches Docker's IPv4 defaults and one IPv6 ULA /40", () => {
    const defaults = defaultIpamSettings();
    assert.equal(defaults.defaultPoolsV4.length, 16);
    assert.deepEqual(defaults.defaultPoolsV4[0], { base: "172.17.0.0/16", size: 16 });
    assert.deepEqual(defaults.defaultPoolsV4[14], { base: "172.31.0.0/16", size: 16 });
    assert.deepEqual(defaults.defaultPoolsV4[15], { base: "192.168.0.0/16", size: 20 });
    assert.deepEqual(defaults.defaultPoolsV6, [{ base: "fd5b:7c1e:ad00::/40", size: 64 }]);
    defaults.defaultPoolsV4.length = 0;
    assert.equal(defaultIpamSettings().defaultPoolsV4.length, 16, "each call is a fresh copy");
  });

  const valid: [text: string, pools: { base: string; size: number }[]][] = [
    ["", []],
    ["  ", []],
    ["172.17.0.0/16:16", [{ base: "172.17.0.0/16", size: 16 }]],
    [
      "172.17.0.0/16:16, 192.168.0.0/16:20",
      [
        { base: "172.17.0.0/16", size: 16 },
        { base: "192.168.0.0/16", size: 20 },
      ],
    ],
    ["fd00::/40:64", [{ base: "fd00::/40", size: 64 }]],
  ];
  for (const [text, pools] of valid) {
    test(`parses ${JSON.stringify(text)}`, () => {
      assert.deepEqual(parseDefaultPools(text), pools);
    });
  }

  const invalid: [text: string, message: string | RegExp][] = [
    ["172.17.0.0/16", 'invalid default pool "172.17.0.0/16": expected BASE/LENGTH:SIZE'],
    ["172.17.0.0:16", 'invalid default pool "172.17.0.0:16": expected BASE/LENGTH:SIZE'],
    ["172.17.0.0/16:x", 'invalid default pool "172.17.0.0/16:x": expected BASE/LENGTH:SIZE'],
    ["172.17.0.0/16:16,", 'invalid default pool "": expected BASE/LENGTH:SIZE'],
    ["172.17.0.0/16:8", "default pool 172.17.0.0/16: size 8 must be a prefix length from 16 to 32"],
    [
      "172.17.0.0/16:33",
      "default pool 172.17.0.0/16: size 33 must be a prefix length from 16 to 32",
    ],
    [
      "172.17.1.0/16:24",
      'default pool "172.17.1.0/16" is not a network address; did you mean 172.17.0.0/16?',
    ],
    ["300.0.0.0/8:16", /^invalid CIDR "300\.0\.0\.0\/8"/],
  ];
  for (const [text, message] of invalid) {
    test(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseDefaultPools(text), { kind: "BadRequest", message });
    });
  }

  test("a family check when asked for one", () => {
    assert.throws(() => parseDefaultPools("fd00::/40:64", false), {
      kind: "BadRequest",
      message: "default pool fd00::/40 is IPv6, but it is listed with the IPv4 pools",
    });
    assert.deepEqual(parseDefaultPools("fd00::/40:64", true), [{ base: "fd00::/40", size: 64 }]);
  });

  test("the constructor refuses defaults of the wrong family", () => {
    assert.throws(
      () => new Ipam({ defaultPoolsV4: [{ base: "fd00::/40", size: 64 }], defaultPoolsV6: [] }),
      { kind: "BadRequest" },
    );
  });
});

describe("pool listing", () => {
  test("pools() lists in request order with allocation counts", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const b = ipam.requestPool(v4("10.2.0.0/24"));
    ipam.requestPool(v4("10.1.0.0/24"));
    ipam.requestAddress(b.poolId, {});
    assert.deepEqual(
      ipam.pools().map((p) => [p.pool, p.allocatedCount]),
      [
        ["10.2.0.0/24", 1],
        ["10.1.0.0/24", 0],
      ],
    );
    assert.equal(ipam.pool("nope"), undefined);
  });
});

// Regression: automatic pools were chosen without looking at the host, so Switchyard answered
// a subnet that docker0, a VPN or a LAN route already used and relied on Docker retrying.
describe("automatic pools skip prefixes routed or addressed on the host", () => {
  const hostV4 = (...cidrs: string[]): PoolRequest => ({ ...v4(), avoid: cidrs.map(parsePrefix) });
  const hostV6 = (...cidrs: string[]): PoolRequest => ({ ...v6(), avoid: cidrs.map(parsePrefix) });

  test("an addressed /24 inside a candidate makes it skipped", { timeout: 10_000 }, () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(ipam.requestPool(hostV4("172.17.5.0/24")).pool, "172.18.0.0/16");
    const small = new Ipam(settings("10.0.0.0/16:24"));
    assert.equal(small.requestPool(hostV4("10.0.0.0/24", "10.0.1.7/32")).pool, "10.0.2.0/24");
  });

  test("a route covering candidates (a /16, a /12) makes them all skipped", {
    timeout: 10_000,
  }, () => {
    const lan = new Ipam(settings("192.168.0.0/16:20,10.10.0.0/16:24"));
    assert.equal(lan.requestPool(hostV4("192.168.0.0/16")).pool, "10.10.0.0/24");
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(ipam.requestPool(hostV4("172.16.0.0/12")).pool, "192.168.0.0/20");
  });

  test("IPv6 host prefixes are skipped; the other family's are not", { timeout: 10_000 }, () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(
      ipam.requestPool(hostV6("fd5b:7c1e:ad00::/64", "172.17.0.0/16")).pool,
      "fd5b:7c1e:ad00:1::/64",
    );
    assert.equal(ipam.requestPool(hostV6("fd5b:7c1e:ad00::/48")).pool, "fd5b:7c1e:ad01::/64");
    assert.equal(ipam.requestPool(hostV4("fd5b:7c1e:ad00::/40")).pool, "172.17.0.0/16");
  });

  test("half the IPv6 default pool routed away is jumped, not walked", { timeout: 10_000 }, () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(ipam.requestPool(hostV6("fd5b:7c1e:ad00::/41")).pool, "fd5b:7c1e:ad80::/64");
  });

  test("default routes (0.0.0.0/0, ::/0) do not count", { timeout: 10_000 }, () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(ipam.requestPool(hostV4("0.0.0.0/0", "::/0")).pool, "172.17.0.0/16");
    assert.equal(ipam.requestPool(hostV6("0.0.0.0/0", "::/0")).pool, "fd5b:7c1e:ad00::/64");
  });

  test("an explicit subnet is not refused for a host route", { timeout: 10_000 }, () => {
    const ipam = new Ipam(defaultIpamSettings());
    const req = { ...v4("172.17.0.0/16"), avoid: [parsePrefix("172.17.0.0/16")] };
    assert.equal(ipam.requestPool(req).pool, "172.17.0.0/16");
  });

  test("a subnet skipped for the host is free again once the host stops using it", {
    timeout: 10_000,
  }, () => {
    const ipam = new Ipam(defaultIpamSettings());
    assert.equal(ipam.requestPool(hostV4("172.17.0.0/16")).pool, "172.18.0.0/16");
    assert.equal(ipam.requestPool(v4()).pool, "172.17.0.0/16");
    assert.equal(ipam.requestPool(v4()).pool, "172.19.0.0/16");
  });

  test("exhaustion because of host routes says so", { timeout: 10_000 }, () => {
    const ipam = new Ipam(settings("10.0.0.0/23:24"));
    ipam.requestPool(v4());
    const before = ipam.snapshot();
    assert.throws(() => ipam.requestPool(hostV4("10.0.1.128/25", "10.0.0.0/8", "fd00::/8")), {
      kind: "Exhausted",
      message:
        "cannot allocate an IPv4 pool in LocalDefault: every subnet of the default pools (10.0.0.0/23:24) is in use or overlaps a route or address on this host (10.0.1.128/25, 10.0.0.0/8); give a subnet",
    });
    assert.deepEqual(ipam.snapshot(), before);
  });

  test("exhaustion by pools alone does not blame the host", { timeout: 10_000 }, () => {
    const ipam = new Ipam(settings("10.0.0.0/23:24"));
    ipam.requestPool(v4());
    ipam.requestPool(v4());
    assert.throws(() => ipam.requestPool(hostV4("10.0.0.0/24", "192.168.0.0/16")), {
      kind: "Exhausted",
      message:
        "cannot allocate an IPv4 pool in LocalDefault: every subnet of the default pools is in use (10.0.0.0/23:24)",
    });
  });
});

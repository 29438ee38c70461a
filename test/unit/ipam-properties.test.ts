import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { Ipam, type IpamSettings, type IpamSnapshot } from "../../src/ipam/ipam.ts";
import {
  formatAddress,
  formatPrefix,
  type IpPrefix,
  lastAddress,
  nthSubnet,
  parseAddress,
  parseAddressOrPrefix,
  parsePrefix,
  prefixContains,
  prefixesOverlap,
  prefixSize,
  subnetCount,
} from "../../src/ipam/prefix.ts";

const settings: IpamSettings = { defaultPoolsV4: [], defaultPoolsV6: [] };
const local = Ipam.localAddressSpace;

/** Small pools, so random offsets collide and ranges run out often. */
const FIXTURE: { pool: string; subPool?: string }[] = [
  { pool: "10.0.0.0/28", subPool: "10.0.0.8/29" },
  { pool: "10.1.0.0/29" },
  { pool: "fd00::/124", subPool: "fd00::8/125" },
  { pool: "10.2.0.0/30" },
  { pool: "10.3.0.0/31" },
  { pool: "10.4.0.0/29", subPool: "10.4.0.4/30" },
];

type Op =
  | { kind: "auto"; pool: number }
  | { kind: "gateway"; pool: number }
  | { kind: "explicit"; pool: number; offset: number; gateway: boolean }
  | { kind: "release"; pool: number; offset: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("auto" as const), pool: fc.nat(FIXTURE.length - 1) }),
  fc.record({ kind: fc.constant("gateway" as const), pool: fc.nat(FIXTURE.length - 1) }),
  fc.record({
    kind: fc.constant("explicit" as const),
    pool: fc.nat(FIXTURE.length - 1),
    offset: fc.nat(15),
    gateway: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant("release" as const),
    pool: fc.nat(FIXTURE.length - 1),
    offset: fc.nat(15),
  }),
);

interface ModelPool {
  poolId: string;
  prefix: IpPrefix;
  size: number;
  /** Offsets any host may have. */
  hosts: number[];
  /** Offsets automatic allocation offers, in order. */
  range: number[];
  held: Set<number>;
  cursor: number | undefined;
}

function setUp(): { ipam: Ipam; model: ModelPool[] } {
  const ipam = new Ipam(settings);
  const model = FIXTURE.map(({ pool, subPool }) => {
    const prefix = parsePrefix(pool);
    const { poolId } = ipam.requestPool({
      addressSpace: local,
      pool,
      v6: prefix.v6,
      ...(subPool === undefined ? {} : { subPool }),
    });
    const size = Number(prefixSize(prefix));
    const hasBroadcast = !prefix.v6 && prefix.length <= 30;
    const hosts = Array.from({ length: size }, (_, i) => i).filter(
      (i) => i !== 0 && !(hasBroadcast && i === size - 1),
    );
    const sub = subPool === undefined ? prefix : parsePrefix(subPool);
    const first = Number(sub.address - prefix.address);
    const last = first + Number(prefixSize(sub)) - 1;
    const range = hosts.filter((i) => i >= first && i <= last);
    return { poolId, prefix, size, hosts, range, held: new Set<number>(), cursor: undefined };
  });
  return { ipam, model };
}

const addressAt = (pool: ModelPool, offset: number): string =>
  formatAddress({ v6: pool.prefix.v6, value: pool.prefix.address + BigInt(offset) });

/** Runs one operation, returning its result or its error class and message. */
function run(ipam: Ipam, model: ModelPool[], op: Op): string {
  const pool = model[op.pool] as ModelPool;
  try {
    switch (op.kind) {
      case "auto":
        return ipam.requestAddress(pool.poolId, {});
      case "gateway":
        return ipam.requestAddress(pool.poolId, { gateway: true });
      case "explicit":
        return ipam.requestAddress(pool.poolId, {
          address: addressAt(pool, op.offset % pool.size),
          gateway: op.gateway,
        });
      case "release":
        ipam.releaseAddress(pool.poolId, addressAt(pool, op.offset % pool.size));
        return "released";
    }
  } catch (error) {
    return `${(error as { kind?: string }).kind}: ${(error as Error).message}`;
  }
}

/** What a naive reference allocator expects: "ok:<offset>", "released" or an error kind. */
function expect(pool: ModelPool, op: Op): string {
  switch (op.kind) {
    case "auto": {
      if (pool.range.length === 0) return "Exhausted";
      const start = pool.range.findIndex((i) => pool.cursor === undefined || i > pool.cursor);
      const order = [...pool.range.slice(Math.max(start, 0)), ...pool.range.slice(0, start)];
      const found = (start === -1 ? pool.range : order).find((i) => !pool.held.has(i));
      return found === undefined ? "Exhausted" : `ok:${found}`;
    }
    case "gateway": {
      const found = pool.hosts.find((i) => !pool.held.has(i));
      return found === undefined ? "Exhausted" : `ok:${found}`;
    }
    case "explicit": {
      const offset = op.offset % pool.size;
      if (!pool.hosts.includes(offset)) return "BadRequest";
      return pool.held.has(offset) ? "Conflict" : `ok:${offset}`;
    }
    case "release":
      return "released";
  }
}

describe("allocation properties", () => {
  test("matches a naive reference allocator; never hands out an address twice", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 120 }), (ops) => {
        const { ipam, model } = setUp();
        for (const op of ops) {
          const pool = model[op.pool] as ModelPool;
          const expected = expect(pool, op);
          const got = run(ipam, model, op);
          if (expected.startsWith("ok:")) {
            const offset = Number(expected.slice(3));
            assert.equal(got, `${addressAt(pool, offset)}/${pool.prefix.length}`);
            // Inside the pool, a host, and not already held.
            const value = parseAddressOrPrefix(got).value - pool.prefix.address;
            assert.ok(pool.hosts.includes(Number(value)));
            assert.ok(!pool.held.has(offset));
            if (op.kind === "auto") {
              assert.ok(pool.range.includes(offset));
              pool.cursor = offset;
            }
            pool.held.add(offset);
          } else if (expected === "released") {
            assert.equal(got, "released");
            pool.held.delete(op.kind === "release" ? op.offset % pool.size : -1);
          } else {
            assert.ok(got.startsWith(`${expected}: `), `${JSON.stringify(op)}: ${got}`);
          }
          assert.equal(ipam.pool(pool.poolId)?.allocatedCount, pool.held.size);
        }
        for (const pool of model) {
          for (let i = 0; i < pool.size; i++) {
            assert.equal(ipam.isAllocated(pool.poolId, addressAt(pool, i)), pool.held.has(i));
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  test("snapshot and restore at any point yields identical subsequent behaviour", () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), fc.nat(80), (ops, cut) => {
        const at = Math.min(cut, ops.length);
        const { ipam: original, model } = setUp();
        for (const op of ops.slice(0, at)) run(original, model, op);
        const snapshot = JSON.parse(JSON.stringify(original.snapshot())) as IpamSnapshot;
        const restored = new Ipam(settings, snapshot);
        for (const op of ops.slice(at)) {
          assert.equal(run(restored, model, op), run(original, model, op));
        }
        assert.deepEqual(restored.snapshot(), original.snapshot());
      }),
      { numRuns: 300 },
    );
  });
});

describe("automatic pool properties", () => {
  // Overlapping defaults of mixed sizes exercise the jump-past-a-pool search and its hint.
  const poolSettings: IpamSettings = {
    defaultPoolsV4: [
      { base: "10.0.0.0/28", size: 30 },
      { base: "10.0.0.0/27", size: 29 },
      { base: "10.0.0.32/28", size: 28 },
    ],
    defaultPoolsV6: [],
  };
  const candidates: IpPrefix[] = poolSettings.defaultPoolsV4.flatMap(({ base, size }) => {
    const prefix = parsePrefix(base);
    return Array.from({ length: Number(subnetCount(prefix, size)) }, (_, i) =>
      nthSubnet(prefix, size, BigInt(i)),
    );
  });

  type PoolOp =
    | { kind: "auto" }
    | { kind: "explicit"; first: number; length: number }
    | { kind: "release"; pick: number };
  const poolOpArb: fc.Arbitrary<PoolOp> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("auto" as const) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("explicit" as const),
        first: fc.nat(63),
        length: fc.integer({ min: 26, max: 32 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
    },
  );

  test("always the first free default subnet; pools never overlap", () => {
    fc.assert(
      fc.property(fc.array(poolOpArb, { maxLength: 60 }), (ops) => {
        const ipam = new Ipam(poolSettings);
        const held = new Map<string, IpPrefix>();
        for (const op of ops) {
          if (op.kind === "auto") {
            const expected = candidates.find((c) =>
              [...held.values()].every((h) => !prefixesOverlap(c, h)),
            );
            if (expected === undefined) {
              assert.throws(() => ipam.requestPool({ addressSpace: local, v6: false }), {
                kind: "Exhausted",
              });
            } else {
              const got = ipam.requestPool({ addressSpace: local, v6: false });
              assert.equal(got.pool, formatPrefix(expected));
              held.set(got.poolId, expected);
            }
          } else if (op.kind === "explicit") {
            const wanted = parsePrefix(`10.0.0.${op.first}/${op.length}`);
            const network = { ...wanted, address: wanted.address & ~(prefixSize(wanted) - 1n) };
            const clash = [...held.values()].some((h) => prefixesOverlap(h, network));
            const req = { addressSpace: local, v6: false, pool: formatPrefix(network) };
            if (clash) {
              assert.throws(() => ipam.requestPool(req), { kind: "Conflict" });
            } else {
              held.set(ipam.requestPool(req).poolId, network);
            }
          } else if (held.size > 0) {
            const poolId = [...held.keys()][op.pick % held.size] as string;
            ipam.releasePool(poolId);
            held.delete(poolId);
          }
          assert.deepEqual(
            ipam
              .pools()
              .map((p) => p.poolId)
              .sort(),
            [...held.keys()].sort(),
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  // Host prefixes change between calls, so a subnet skipped for the host once must be found
  // again later: the walk's resume point may never move past it.
  const hostArb = fc.array(
    fc.oneof(
      fc.record({ first: fc.nat(63), length: fc.integer({ min: 26, max: 32 }) }),
      fc.record({ first: fc.constant(0), length: fc.constantFrom(0, 8, 24) }),
    ),
    { maxLength: 3 },
  );
  test("with host prefixes: the first default subnet free of pools and the host's prefixes", {
    timeout: 10_000,
  }, () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(poolOpArb, hostArb), { maxLength: 60 }), (steps) => {
        const ipam = new Ipam(poolSettings);
        const held = new Map<string, IpPrefix>();
        for (const [op, hostParts] of steps) {
          if (op.kind !== "auto") {
            if (op.kind === "release" && held.size > 0) {
              const poolId = [...held.keys()][op.pick % held.size] as string;
              ipam.releasePool(poolId);
              held.delete(poolId);
            }
            continue;
          }
          const avoid = hostParts.map(({ first, length }) =>
            parsePrefix(`10.0.0.${first}/${length}`),
          );
          const blocked = [...held.values(), ...avoid.filter((a) => a.length > 0)];
          const expected = candidates.find((c) => blocked.every((b) => !prefixesOverlap(c, b)));
          const req = { addressSpace: local, v6: false, avoid };
          if (expected === undefined) {
            assert.throws(() => ipam.requestPool(req), { kind: "Exhausted" });
          } else {
            const got = ipam.requestPool(req);
            assert.equal(got.pool, formatPrefix(expected));
            held.set(got.poolId, expected);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("prefix properties", () => {
  const v4 = fc.bigInt({ min: 0n, max: (1n << 32n) - 1n });
  const v6 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n });

  test("formatting then parsing an address is the identity", () => {
    fc.assert(
      fc.property(fc.boolean(), v4, v6, (isV6, a, b) => {
        const address = { v6: isV6, value: isV6 ? b : a };
        assert.deepEqual(parseAddress(formatAddress(address)), address);
      }),
    );
  });

  test("IPv6 text with few distinct groups still round-trips (zero runs)", () => {
    const group = fc.constantFrom(0n, 0n, 0n, 1n, 0xffffn);
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (groups) => {
        const value = groups.reduce<bigint>((acc, g) => (acc << 16n) | g, 0n);
        const text = formatAddress({ v6: true, value });
        assert.equal(parseAddress(text).value, value);
        assert.ok(!text.includes(":::"));
        assert.ok(text.split("::").length <= 2);
      }),
    );
  });

  test("containment implies overlap; overlap is symmetric", () => {
    const prefix = fc
      .tuple(v4, fc.integer({ min: 0, max: 32 }))
      .map(([address, length]): IpPrefix => ({ v6: false, address, length }));
    fc.assert(
      fc.property(prefix, prefix, (a, b) => {
        assert.equal(prefixesOverlap(a, b), prefixesOverlap(b, a));
        if (prefixContains(a, b)) assert.ok(prefixesOverlap(a, b));
        if (prefixContains(a, b) && prefixContains(b, a)) {
          assert.equal(a.length, b.length);
          assert.equal(lastAddress(a), lastAddress(b));
        }
      }),
    );
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultIpamSettings, Ipam, type IpamSnapshot } from "../../src/ipam/ipam.ts";

const settings = defaultIpamSettings();
const local = Ipam.localAddressSpace;

/** Round-trips through JSON text, as the state file does. */
const viaJson = (snapshot: IpamSnapshot): IpamSnapshot =>
  JSON.parse(JSON.stringify(snapshot)) as IpamSnapshot;

function populated(): Ipam {
  const ipam = new Ipam(settings);
  const a = ipam.requestPool({ addressSpace: local, pool: "10.15.20.0/24", v6: false });
  ipam.requestAddress(a.poolId, { gateway: true });
  ipam.requestAddress(a.poolId, {});
  ipam.requestAddress(a.poolId, {});
  ipam.releaseAddress(a.poolId, "10.15.20.3");
  const b = ipam.requestPool({
    addressSpace: local,
    pool: "fd00::/64",
    subPool: "fd00::100/120",
    v6: true,
  });
  ipam.requestAddress(b.poolId, { gateway: true });
  ipam.requestAddress(b.poolId, {});
  ipam.requestPool({ addressSpace: Ipam.globalAddressSpace, v6: false });
  return ipam;
}

describe("snapshot", () => {
  test("has a stable, plain-JSON shape", () => {
    assert.deepEqual(viaJson(populated().snapshot()), {
      version: 1,
      pools: {
        "LocalDefault/10.15.20.0/24": {
          addressSpace: "LocalDefault",
          pool: "10.15.20.0/24",
          v6: false,
          lastAllocated: "10.15.20.3",
          allocated: { "0": "Bg==" }, // .1 and .2; .3 released
        },
        "LocalDefault/fd00::/64/fd00::100/120": {
          addressSpace: "LocalDefault",
          pool: "fd00::/64",
          subPool: "fd00::100/120",
          v6: true,
          lastAllocated: "fd00::100",
          // bit 1 (gateway ::1) and bit 256 (fd00::100), bit 0 of byte 0 first
          allocated: { "0": Buffer.from([2, ...new Array(31).fill(0), 1]).toString("base64") },
        },
        "GlobalDefault/172.17.0.0/16": {
          addressSpace: "GlobalDefault",
          pool: "172.17.0.0/16",
          v6: false,
          allocated: {},
        },
      },
    });
  });

  test("round-trips through JSON exactly, cursor included", () => {
    const original = populated();
    const restored = new Ipam(settings, viaJson(original.snapshot()));
    assert.deepEqual(restored.snapshot(), original.snapshot());
    assert.deepEqual(restored.pools(), original.pools());
    // .3 was just released: neither copy hands it out again before the range wraps.
    const poolId = "LocalDefault/10.15.20.0/24";
    assert.equal(restored.requestAddress(poolId, {}), "10.15.20.4/24");
    assert.equal(original.requestAddress(poolId, {}), "10.15.20.4/24");
    assert.equal(restored.requestPool({ addressSpace: local, v6: false }).pool, "172.17.0.0/16");
    assert.equal(
      restored.requestPool({ addressSpace: Ipam.globalAddressSpace, v6: false }).pool,
      "172.18.0.0/16",
    );
  });

  test("is a deep copy in both directions", () => {
    const ipam = populated();
    const snapshot = ipam.snapshot();
    const frozen = structuredClone(snapshot);
    ipam.requestAddress("LocalDefault/10.15.20.0/24", {});
    assert.deepEqual(snapshot, frozen, "later changes do not leak into an old snapshot");
    const restored = new Ipam(settings, snapshot);
    const pool = snapshot.pools["LocalDefault/10.15.20.0/24"];
    if (pool !== undefined) pool.allocated = {};
    snapshot.pools = {};
    assert.deepEqual(restored.snapshot(), frozen, "the restored allocator owns its state");
  });

  test("an empty allocator", () => {
    assert.deepEqual(new Ipam(settings).snapshot(), { version: 1, pools: {} });
    assert.deepEqual(new Ipam(settings, { version: 1, pools: {} }).pools(), []);
  });
});

describe("every refused call leaves the state unchanged", () => {
  const pool4 = "LocalDefault/10.15.20.0/24";
  const pool6 = "LocalDefault/fd00::/64/fd00::100/120";
  const calls: [name: string, call: (ipam: Ipam) => unknown][] = [
    ["unknown space", (i) => i.requestPool({ addressSpace: "x", v6: false })],
    ["bad CIDR", (i) => i.requestPool({ addressSpace: local, pool: "10.0.0.0/33", v6: false })],
    ["host bits", (i) => i.requestPool({ addressSpace: local, pool: "10.0.0.1/8", v6: false })],
    ["overlap", (i) => i.requestPool({ addressSpace: local, pool: "10.15.0.0/16", v6: false })],
    [
      "sub-pool outside",
      (i) =>
        i.requestPool({
          addressSpace: local,
          pool: "10.9.0.0/24",
          subPool: "10.8.0.0/25",
          v6: false,
        }),
    ],
    ["family", (i) => i.requestPool({ addressSpace: local, pool: "10.9.0.0/24", v6: true })],
    ["release unknown pool", (i) => i.releasePool("LocalDefault/10.9.0.0/24")],
    ["address unknown pool", (i) => i.requestAddress("nope", {})],
    ["address in use", (i) => i.requestAddress(pool4, { address: "10.15.20.1" })],
    ["network address", (i) => i.requestAddress(pool4, { address: "10.15.20.0" })],
    ["broadcast address", (i) => i.requestAddress(pool4, { address: "10.15.20.255" })],
    ["outside", (i) => i.requestAddress(pool4, { address: "10.15.21.1" })],
    ["malformed", (i) => i.requestAddress(pool4, { address: "10.15.20" })],
    ["IPv6 anycast", (i) => i.requestAddress(pool6, { address: "fd00::" })],
    ["release outside", (i) => i.releaseAddress(pool4, "10.15.21.1")],
    ["release malformed", (i) => i.releaseAddress(pool4, "")],
    ["release unknown pool", (i) => i.releaseAddress("nope", "10.15.20.1")],
  ];
  for (const [name, call] of calls) {
    test(name, () => {
      const ipam = populated();
      const before = ipam.snapshot();
      assert.throws(() => call(ipam), { name: /Error$/ });
      assert.deepEqual(ipam.snapshot(), before);
    });
  }

  test("an exhausted range", () => {
    const ipam = new Ipam(settings);
    const { poolId } = ipam.requestPool({ addressSpace: local, pool: "10.0.0.0/30", v6: false });
    ipam.requestAddress(poolId, {});
    ipam.requestAddress(poolId, {});
    const before = ipam.snapshot();
    assert.throws(() => ipam.requestAddress(poolId, {}), { kind: "Exhausted" });
    assert.deepEqual(ipam.snapshot(), before);
  });
});

describe("restoring a damaged snapshot", () => {
  const good = (): IpamSnapshot => viaJson(populated().snapshot());
  const cases: [name: string, damage: (s: IpamSnapshot) => unknown, reason: RegExp][] = [
    [
      "an unknown version",
      (s) => Object.assign(s, { version: 2 }),
      /unsupported snapshot version 2/,
    ],
    [
      "an ID that does not match the fields",
      (s) => {
        const entry = s.pools["LocalDefault/10.15.20.0/24"];
        s.pools = { "LocalDefault/10.15.21.0/24": entry as NonNullable<typeof entry> };
      },
      /its fields give the ID "LocalDefault\/10\.15\.20\.0\/24"/,
    ],
    [
      "overlapping pools",
      (s) => {
        s.pools["LocalDefault/10.15.0.0/16"] = {
          addressSpace: "LocalDefault",
          pool: "10.15.0.0/16",
          v6: false,
          allocated: {},
        };
      },
      /overlaps pool "LocalDefault\/10\.15\.20\.0\/24"/,
    ],
    [
      "a corrupt chunk",
      (s) => {
        const entry = s.pools["LocalDefault/10.15.20.0/24"];
        if (entry !== undefined) entry.allocated = { "0": "%%%" };
      },
      /chunk 0 is not base64/,
    ],
    [
      "the network address marked allocated",
      (s) => {
        const entry = s.pools["LocalDefault/10.15.20.0/24"];
        if (entry !== undefined) entry.allocated = { "0": "AQ==" };
      },
      /reserved address 10\.15\.20\.0 is marked allocated/,
    ],
    [
      "the broadcast address marked allocated",
      (s) => {
        const entry = s.pools["LocalDefault/10.15.20.0/24"];
        if (entry !== undefined) {
          entry.allocated = {
            "0": Buffer.from([...new Array(31).fill(0), 0x80]).toString("base64"),
          };
        }
      },
      /reserved address 10\.15\.20\.255 is marked allocated/,
    ],
    [
      "a cursor outside the pool",
      (s) => {
        const entry = s.pools["LocalDefault/10.15.20.0/24"];
        if (entry !== undefined) entry.lastAllocated = "10.15.21.1";
      },
      /last allocated address 10\.15\.21\.1 is outside the pool/,
    ],
    [
      "an unknown address space",
      (s) => {
        const entry = s.pools["LocalDefault/10.15.20.0/24"];
        if (entry !== undefined) entry.addressSpace = "Other";
      },
      /unknown address space "Other"/,
    ],
  ];
  for (const [name, damage, reason] of cases) {
    test(`refuses ${name} as an internal error`, () => {
      const snapshot = good();
      damage(snapshot);
      assert.throws(
        () => new Ipam(settings, snapshot),
        (error: unknown) => {
          assert.ok(error instanceof Error);
          assert.equal((error as { kind?: string }).kind, "Internal");
          assert.match(error.message, /^cannot restore IPAM state: /);
          assert.match(error.message, reason);
          return true;
        },
      );
    });
  }
});

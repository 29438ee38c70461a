import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { defaultIpamSettings, Ipam } from "../../src/ipam/ipam.ts";

/** An allocator with one sticky pool (gateway taken, as Docker does at network creation). */
function stickyPool(pool: string, subPool?: string): { ipam: Ipam; poolId: string } {
  const ipam = new Ipam(defaultIpamSettings());
  const { poolId } = ipam.requestPool({
    addressSpace: Ipam.localAddressSpace,
    pool,
    v6: pool.includes(":"),
    sticky: true,
    ...(subPool === undefined ? {} : { subPool }),
  });
  ipam.requestAddress(poolId, { gateway: true });
  return { ipam, poolId };
}

const named = (ipam: Ipam, poolId: string, name: string) => ipam.requestNamedAddress(poolId, name);

describe("sticky addresses (--ipam-opt sticky=true)", () => {
  test("a name that comes back after its address was released gets the same address", () => {
    const { ipam, poolId } = stickyPool("10.40.0.0/24");
    const web = named(ipam, poolId, "web").address;
    const db = named(ipam, poolId, "db").address;
    assert.equal(web, "10.40.0.2/24");
    assert.equal(db, "10.40.0.3/24");
    ipam.releaseAddress(poolId, web);
    ipam.releaseAddress(poolId, db);
    // Without the reservation the cursor would hand out .4 next; a new name must not take
    // web's or db's kept address while another is free.
    assert.equal(named(ipam, poolId, "cache").address, "10.40.0.4/24");
    assert.equal(named(ipam, poolId, "db").address, db);
    assert.equal(named(ipam, poolId, "web").address, web);
  });

  test("IPv6 pools keep names too", () => {
    const { ipam, poolId } = stickyPool("fd00:40::/64");
    const first = named(ipam, poolId, "web").address;
    ipam.releaseAddress(poolId, first);
    named(ipam, poolId, "other");
    assert.equal(named(ipam, poolId, "web").address, first);
  });

  test("a request without a name does not take a kept address while another is free", () => {
    const { ipam, poolId } = stickyPool("10.40.0.0/29");
    const web = named(ipam, poolId, "web").address;
    ipam.releaseAddress(poolId, web);
    assert.notEqual(ipam.requestAddress(poolId, {}), web);
  });

  test("a kept address goes to another name only when no unreserved address is left, least recently used first", () => {
    // /29: hosts .1–.6; .1 is the gateway, so five addresses for containers.
    const { ipam, poolId } = stickyPool("10.40.0.0/29");
    const names = ["a", "b", "c", "d", "e"];
    const addresses = names.map((name) => named(ipam, poolId, name).address);
    for (const address of addresses) ipam.releaseAddress(poolId, address);
    // Use order now: b, then a (c, d, e are older).
    ipam.releaseAddress(poolId, named(ipam, poolId, "b").address);
    ipam.releaseAddress(poolId, named(ipam, poolId, "a").address);
    const first = named(ipam, poolId, "new1");
    assert.deepEqual(first, { address: addresses[2], takenFrom: "c" });
    const second = named(ipam, poolId, "new2");
    assert.deepEqual(second, { address: addresses[3], takenFrom: "d" });
    // c lost its address: it gets another kept one (e's, the least recently used left).
    assert.deepEqual(named(ipam, poolId, "c"), { address: addresses[4], takenFrom: "e" });
  });

  test("exhausted when every address is in use, kept or not", () => {
    const { ipam, poolId } = stickyPool("10.40.0.0/30");
    named(ipam, poolId, "a");
    assert.throws(() => named(ipam, poolId, "b"), /no free address left/);
  });

  test("a kept address someone else holds (a static --ip) gives the name a new one", () => {
    const { ipam, poolId } = stickyPool("10.40.0.0/24");
    const web = named(ipam, poolId, "web").address;
    ipam.releaseAddress(poolId, web);
    ipam.requestAddress(poolId, { address: web });
    const again = named(ipam, poolId, "web").address;
    assert.notEqual(again, web);
  });

  test("the reservations survive a snapshot and restore", () => {
    const { ipam, poolId } = stickyPool("10.40.0.0/24", "10.40.0.128/25");
    const web = named(ipam, poolId, "web").address;
    ipam.releaseAddress(poolId, web);
    const restored = new Ipam(defaultIpamSettings(), JSON.parse(JSON.stringify(ipam.snapshot())));
    assert.equal(restored.pool(poolId)?.sticky, true);
    named(restored, poolId, "other");
    assert.equal(named(restored, poolId, "web").address, web);
  });

  test("a rolled-back request leaves the reservations as they were", () => {
    const { ipam, poolId } = stickyPool("10.40.0.0/24");
    const web = named(ipam, poolId, "web").address;
    ipam.releaseAddress(poolId, web);
    ipam.settle();
    const mark = ipam.savepoint();
    named(ipam, poolId, "web");
    named(ipam, poolId, "db");
    ipam.rollbackTo(mark);
    ipam.settle();
    assert.deepEqual(ipam.poolSnapshot(poolId)?.sticky?.names, {
      web: { offset: "2", used: 1 },
    });
    assert.equal(named(ipam, poolId, "web").address, web);
  });

  test("a pool that is not sticky ignores the name", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({
      addressSpace: Ipam.localAddressSpace,
      pool: "10.41.0.0/24",
      v6: false,
    });
    const web = named(ipam, poolId, "web").address;
    ipam.releaseAddress(poolId, web);
    assert.notEqual(named(ipam, poolId, "web").address, web);
    assert.equal(ipam.poolSnapshot(poolId)?.sticky, undefined);
  });

  test("a snapshot with a malformed reservation is refused", () => {
    const { ipam, poolId } = stickyPool("10.40.0.0/24");
    const snapshot = ipam.snapshot();
    const pool = snapshot.pools[poolId];
    assert.ok(pool);
    pool.sticky = { clock: 1, names: { web: { offset: "9999", used: 1 } } };
    assert.throws(() => new Ipam(defaultIpamSettings(), snapshot), /outside the pool/);
  });
});

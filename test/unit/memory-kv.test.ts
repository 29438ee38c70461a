import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { WatchEvent } from "../../src/cluster/kv.ts";
import { txnContract } from "../support/kv-contract.ts";
import { MemoryKeyValueStore } from "../support/memory-kv.ts";

/** Lets pending store answers and watch deliveries run. */
const settle = async (): Promise<void> => {
  for (let turn = 0; turn < 5; turn++) await new Promise((resolve) => setImmediate(resolve));
};

/**
 * The fake stands in for etcd in the cluster tests, so it must keep etcd's promises: these
 * mirror test/netns/etcd.test.ts, which holds EtcdClient to the same ones.
 */
describe("MemoryKeyValueStore", () => {
  it("puts, creates only once, lists a prefix in key order and deletes it", {
    timeout: 10_000,
  }, async () => {
    const kv = new MemoryKeyValueStore();
    await kv.put("t/b", "1");
    assert.equal(await kv.create("t/a", "2"), true);
    assert.equal(await kv.create("t/a", "3"), false);
    await kv.put("u/a", "other prefix");
    assert.deepEqual(await kv.range("t/"), [
      { key: "t/a", value: "2" },
      { key: "t/b", value: "1" },
    ]);
    assert.equal(await kv.get("t/a"), "2");
    await kv.deletePrefix("t/");
    assert.deepEqual(await kv.range("t/"), []);
    assert.equal(await kv.get("u/a"), "other prefix");
  });

  it("txn: compares on absence, value and a prefix's revisions, then writes atomically", {
    timeout: 10_000,
  }, async () => {
    await txnContract(new MemoryKeyValueStore());
  });

  it("creates a key once when many ask at the same time", { timeout: 10_000 }, async () => {
    const kv = new MemoryKeyValueStore();
    const results = await Promise.all(["a", "b", "c", "d"].map((host) => kv.create("lock", host)));
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(await kv.get("lock"), ["a", "b", "c", "d"][results.indexOf(true)]);
  });

  it("bumps the revision once per write and not for writes that change nothing", {
    timeout: 10_000,
  }, async () => {
    const kv = new MemoryKeyValueStore();
    const start = Number((await kv.snapshot("")).revision);
    await kv.put("a/1", "x");
    await kv.put("a/2", "x");
    assert.equal(await kv.create("a/1", "y"), false);
    await kv.delete("missing");
    assert.equal(Number((await kv.snapshot("")).revision), start + 2);
    await kv.deletePrefix("a/");
    assert.equal(Number((await kv.snapshot("")).revision), start + 3);
  });

  it("a watch from a listing's revision replays what came after, then follows", {
    timeout: 10_000,
  }, async () => {
    const kv = new MemoryKeyValueStore();
    await kv.put("w/a", "1");
    const listing = await kv.snapshot("w/");
    await kv.put("w/b", "2");
    await kv.put("elsewhere", "not watched");
    const events: WatchEvent[] = [];
    const controller = new AbortController();
    const watching = kv.watch(
      "w/",
      (event) => events.push(event),
      controller.signal,
      listing.revision,
    );
    await kv.delete("w/a");
    await settle();
    controller.abort();
    await watching;
    await kv.put("w/c", "after the abort");
    await settle();
    assert.deepEqual(events, [
      { type: "PUT", key: "w/b", value: "2" },
      { type: "DELETE", key: "w/a", value: "" },
    ]);
  });

  it("a lease that runs out or is expired takes its keys, and watchers hear of it", {
    timeout: 10_000,
  }, async () => {
    const kv = new MemoryKeyValueStore();
    const short = await kv.grantLease(10);
    const long = await kv.grantLease(30);
    await kv.put("l/short", "x", short);
    await kv.put("l/long", "y", long);
    await kv.put("l/none", "z");
    assert.deepEqual(
      (await kv.range("l/long")).map((entry) => entry.lease),
      [long],
    );
    const events: WatchEvent[] = [];
    const controller = new AbortController();
    const watching = kv.watch("l/", (event) => events.push(event), controller.signal);
    kv.advance(9);
    assert.equal(await kv.keepAlive(short), true, "renewed within its TTL");
    kv.advance(9);
    assert.equal(await kv.get("l/short"), "x", "the keep-alive moved its deadline");
    kv.advance(2);
    assert.equal(await kv.get("l/short"), undefined);
    assert.equal(await kv.keepAlive(short), false);
    kv.expireLease(long);
    await settle();
    controller.abort();
    await watching;
    assert.deepEqual(events, [
      { type: "DELETE", key: "l/short", value: "" },
      { type: "DELETE", key: "l/long", value: "" },
    ]);
    assert.deepEqual(await kv.range("l/"), [{ key: "l/none", value: "z" }]);
    await assert.rejects(kv.put("l/again", "x", long), /lease .* not found/);
    await assert.rejects(kv.revokeLease(long), /lease .* not found/);
  });

  it("rejects every call while unavailable and ends open watches", {
    timeout: 10_000,
  }, async () => {
    const kv = new MemoryKeyValueStore();
    const controller = new AbortController();
    const watching = kv.watch("x/", () => undefined, controller.signal);
    await settle();
    kv.unavailable = true;
    await watching;
    await assert.rejects(kv.get("x/a"), { kind: "Internal", message: /unreachable/ });
    await assert.rejects(
      kv.watch("x/", () => undefined, controller.signal),
      /unreachable/,
    );
    kv.unavailable = false;
    kv.failing.add("create");
    await assert.rejects(kv.create("x/a", "1"), /create failed/);
    await kv.put("x/a", "1");
    assert.equal(await kv.get("x/a"), "1");
    controller.abort();
  });
});

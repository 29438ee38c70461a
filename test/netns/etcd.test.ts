import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { EtcdClient } from "../../src/cluster/etcd.ts";
import type { WatchEvent } from "../../src/cluster/kv.ts";
import { startEtcd } from "../support/etcd.ts";

describe("EtcdClient against a real etcd", () => {
  let etcd: Awaited<ReturnType<typeof startEtcd>> | undefined;
  let client: EtcdClient;

  before(async () => {
    etcd = await startEtcd(23_795);
    client = new EtcdClient(["http://127.0.0.1:1", etcd.url]);
  });
  after(() => etcd?.stop());

  it("puts, creates only once, lists a prefix and deletes it", async () => {
    await client.put("t/a", "1");
    assert.equal(await client.create("t/b", "2"), true);
    assert.equal(await client.create("t/b", "3"), false);
    assert.deepEqual(await client.range("t/"), [
      { key: "t/a", value: "1" },
      { key: "t/b", value: "2" },
    ]);
    await client.deletePrefix("t/");
    assert.deepEqual(await client.range("t/"), []);
  });

  it("txn: compares on absence, value and a prefix's revisions, then writes atomically", {
    timeout: 60_000,
  }, async () => {
    const kv = client;
    const absent = { target: "createRevision", result: "=", operand: "0" } as const;
    const first = await kv.txn({
      compare: [{ key: "x/config", ...absent }],
      success: [
        { type: "put", key: "x/config", value: "c1" },
        { type: "put", key: "x/hosts/a", value: "va" },
      ],
    });
    assert.equal(first.succeeded, true);
    // The same compare fails now, and the failure writes run instead.
    const second = await kv.txn({
      compare: [{ key: "x/config", ...absent }],
      success: [{ type: "put", key: "x/config", value: "c2" }],
      failure: [{ type: "put", key: "x/lost", value: "1" }],
    });
    assert.equal(second.succeeded, false);
    assert.equal(await kv.get("x/config"), "c1");
    assert.equal(await kv.get("x/lost"), "1");
    // A value compare holds only on the exact value, and never on a missing key.
    for (const [key, operand, holds] of [
      ["x/config", "c1", true],
      ["x/config", "c2", false],
      ["x/missing", "", false],
    ] as const) {
      const answer = await kv.txn({
        compare: [{ key, target: "value", result: "=", operand }],
        success: [],
      });
      assert.equal(answer.succeeded, holds, `${key} = "${operand}"`);
    }
    // Over a prefix: absence holds only when no key has it; an empty prefix holds it.
    const none = await kv.txn({
      compare: [{ key: "x/hosts/", prefix: true, ...absent }],
      success: [],
    });
    assert.equal(none.succeeded, false);
    const empty = await kv.txn({ compare: [{ key: "y/", prefix: true, ...absent }], success: [] });
    assert.equal(empty.succeeded, true);
    // "Nothing under the prefix written since the listing": a later put breaks it.
    const listing = await kv.snapshot("x/");
    const since = String(BigInt(listing.revision) + 1n);
    const unchanged = {
      key: "x/",
      prefix: true,
      target: "modRevision",
      result: "<",
      operand: since,
    } as const;
    assert.equal((await kv.txn({ compare: [unchanged], success: [] })).succeeded, true);
    await kv.put("x/hosts/b", "vb");
    const cleared = await kv.txn({
      compare: [unchanged],
      success: [{ type: "delete", key: "x/", prefix: true }],
    });
    assert.equal(cleared.succeeded, false);
    assert.equal((await kv.range("x/")).length, 4);
    const now = await kv.snapshot("x/");
    const done = await kv.txn({
      compare: [{ ...unchanged, operand: String(BigInt(now.revision) + 1n) }],
      success: [{ type: "delete", key: "x/", prefix: true }],
    });
    assert.equal(done.succeeded, true);
    assert.deepEqual(await kv.range("x/"), []);
    assert.ok(BigInt(done.revision) > BigInt(now.revision), "the delete is a new revision");
  });

  it("a watch from a listing's revision misses no change made in between", async () => {
    // Regression: peers that registered between the listing and the watch were never seen.
    await client.put("w/a", "1");
    const listing = await client.snapshot("w/");
    await client.put("w/b", "2");
    const events: WatchEvent[] = [];
    const controller = new AbortController();
    const watching = client.watch(
      "w/",
      (event) => events.push(event),
      controller.signal,
      listing.revision,
    );
    await client.delete("w/a");
    for (let attempt = 0; events.length < 2 && attempt < 50; attempt++) await sleep(50);
    controller.abort();
    await watching;
    assert.deepEqual(events, [
      { type: "PUT", key: "w/b", value: "2" },
      { type: "DELETE", key: "w/a", value: "" },
    ]);
  });

  it("leases expire their keys when revoked", async () => {
    const lease = await client.grantLease(10);
    await client.put("l/host", "x", lease);
    assert.equal(await client.keepAlive(lease), true);
    await client.revokeLease(lease);
    assert.deepEqual(await client.range("l/"), []);
    assert.equal(await client.keepAlive(lease), false);
  });

  it("says clearly when no endpoint answers", async () => {
    await assert.rejects(
      new EtcdClient(["http://127.0.0.1:1"]).get("x"),
      /etcd is unreachable \(http:\/\/127\.0\.0\.1:1\)/,
    );
  });
});

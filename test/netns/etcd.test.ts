import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { EtcdClient } from "../../src/cluster/etcd.ts";
import type { WatchEvent } from "../../src/cluster/kv.ts";
import { startEtcd } from "../support/etcd.ts";
import { txnContract } from "../support/kv-contract.ts";

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
    await txnContract(client);
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

import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { ClusterService, type NameRecord, type PublishedName } from "../../src/cluster/cluster.ts";
import { planNameWrites } from "../../src/cluster/name-sync.ts";
import { eventually } from "../support/eventually.ts";
import { MemoryKeyValueStore } from "../support/memory-kv.ts";

/**
 * This host's names in etcd are reconciled, not remembered: etcd's entries under the host's
 * prefix are brought to the desired set on every change, after a new lease and periodically,
 * and retried until etcd agrees.
 */
const TIMEOUT = { timeout: 10_000 };
const VNI = 4242;
const CONFIG = { subnet: "10.60.0.0/24", gateway: "10.60.0.1" };
const NAMES = "switchyard/v1/networks/4242/names/";
const running: ClusterService[] = [];

afterEach(() => {
  for (const cluster of running.splice(0)) cluster.stop();
});

function member(
  kv: MemoryKeyValueStore,
  hostId: string,
  options: {
    seen?: Map<number, PublishedName[]>;
    retryDelay?: (failures: number) => number;
    namesResyncMs?: number;
  } = {},
): ClusterService {
  const cluster = new ClusterService({
    kv,
    logger: pino({ level: "silent" }),
    identity: { hostId, vtep: `192.0.2.${hostId.length}` },
    blockLength: 26,
    onPeers: () => undefined,
    onNames: (vni, names) => options.seen?.set(vni, names),
    retryDelay: options.retryDelay ?? (() => 10),
    ...(options.namesResyncMs === undefined ? {} : { namesResyncMs: options.namesResyncMs }),
  });
  running.push(cluster);
  return cluster;
}

/** Whether a promise has resolved yet, read later without awaiting it. */
function settledYet(promise: Promise<void>): () => boolean {
  let done = false;
  promise.then(() => {
    done = true;
  });
  return () => done;
}

/** What etcd holds under a host's names prefix: endpoint → value. */
async function stored(
  kv: MemoryKeyValueStore,
  hostId = "host-a",
  vni = VNI,
): Promise<Record<string, string>> {
  const prefix = `switchyard/v1/networks/${vni}/names/${hostId}/`;
  const entries = await kv.range(prefix);
  return Object.fromEntries(entries.map((entry) => [entry.key.slice(prefix.length), entry.value]));
}

const value = (record: NameRecord): string => JSON.stringify(record);
const WEB1: NameRecord = { names: ["web1"], ipv4: "10.60.0.5" };
const WEB2: NameRecord = { names: ["web2", "w2"], ipv4: "10.60.0.6" };

describe("names in etcd are reconciled, not remembered", () => {
  it(
    "a withdrawal etcd missed is done at the first retry once etcd answers again",
    TIMEOUT,
    async () => {
      // Regression: a withdrawal forgot the name before deleting it in etcd; when the delete
      // failed (an etcd blip during docker rm) the name went on resolving on the other hosts,
      // under the host's live lease, until the host stopped.
      const kv = new MemoryKeyValueStore();
      const a = member(kv, "host-a", { retryDelay: () => 30 });
      await a.joinNetwork(VNI, CONFIG, { fresh: true });
      a.setLocalNames(VNI, new Map([["e1", WEB1]]));
      await a.namesSettled(VNI);
      assert.deepEqual(await stored(kv), { e1: value(WEB1) });
      // Each delete's outcome, in the order they answer: a delete already sent when etcd
      // comes back answers after it, so tries are told apart by outcome, not by send time.
      const deletes: ("failed" | "done")[] = [];
      const remove = kv.delete.bind(kv);
      kv.delete = (key: string) =>
        remove(key).then(
          () => {
            deletes.push("done");
          },
          (error: unknown) => {
            deletes.push("failed");
            throw error;
          },
        );
      kv.failing.add("delete");
      a.setLocalNames(VNI, new Map());
      await eventually(() =>
        assert.deepEqual(a.namesOutOfSync(), [
          { vni: VNI, reason: "etcd is unreachable (memory store): delete failed" },
        ]),
      );
      const settled = settledYet(a.namesSettled(VNI));
      await eventually(() => assert.ok(deletes.length >= 2, "retried while etcd refuses"));
      assert.equal(settled(), false, "not settled while etcd refuses the delete");
      assert.deepEqual(await stored(kv), { e1: value(WEB1) });
      kv.failing.clear();
      await eventually(async () => assert.deepEqual(await stored(kv), {}));
      await a.namesSettled(VNI);
      assert.equal(settled(), true);
      assert.deepEqual(
        deletes.slice(deletes.indexOf("done")),
        ["done"],
        "gone with the first try after etcd came back, and tried no more",
      );
      assert.ok(deletes.slice(0, -1).every((outcome) => outcome === "failed"));
      assert.deepEqual(a.namesOutOfSync(), []);
    },
  );

  it("a publication etcd missed appears once etcd answers again", TIMEOUT, async () => {
    // Regression: a publication recorded the name before writing it; after a failed put the
    // resync saw it as published and never wrote it, so it never resolved elsewhere.
    const kv = new MemoryKeyValueStore();
    const seenB = new Map<number, PublishedName[]>();
    const a = member(kv, "host-a");
    const b = member(kv, "host-b", { seen: seenB });
    await a.joinNetwork(VNI, CONFIG, { fresh: true });
    await b.joinNetwork(VNI, CONFIG);
    kv.failing.add("put");
    a.setLocalNames(VNI, new Map([["e1", WEB1]]));
    await eventually(() =>
      assert.deepEqual(a.namesOutOfSync(), [
        { vni: VNI, reason: "etcd is unreachable (memory store): put failed" },
      ]),
    );
    const settled = settledYet(a.namesSettled(VNI));
    await sleep(50); // retries fail meanwhile
    assert.equal(settled(), false, "still wanted after the failed puts");
    assert.deepEqual(await stored(kv), {});
    kv.failing.clear();
    await a.namesSettled(VNI);
    assert.equal(settled(), true);
    assert.deepEqual(await stored(kv), { e1: value(WEB1) });
    await eventually(() =>
      assert.deepEqual(seenB.get(VNI), [{ hostId: "host-a", endpointId: "e1", ...WEB1 }]),
    );
  });

  it(
    "setLocalNames makes etcd hold exactly the set: puts, rewrites, deletes",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const a = member(kv, "host-a");
      await a.joinNetwork(VNI, CONFIG, { fresh: true });
      a.setLocalNames(VNI, new Map([["e1", WEB1]]));
      await a.namesSettled(VNI);
      assert.deepEqual(await stored(kv), { e1: value(WEB1) });

      const renamed: NameRecord = { names: ["api"], ipv4: "10.60.0.5" };
      a.setLocalNames(
        VNI,
        new Map([
          ["e1", renamed],
          ["e2", WEB2],
        ]),
      );
      await a.namesSettled(VNI);
      assert.deepEqual(await stored(kv), { e1: value(renamed), e2: value(WEB2) });

      a.setLocalNames(VNI, new Map([["e2", WEB2]]));
      await a.namesSettled(VNI);
      assert.deepEqual(await stored(kv), { e2: value(WEB2) });
      const [entry] = await kv.range(`${NAMES}host-a/e2`);
      assert.ok(entry?.lease !== undefined && kv.leases.includes(entry.lease), "under the lease");
    },
  );

  it("the periodic pass repairs what etcd lost or holds in excess", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = member(kv, "host-a", { namesResyncMs: 20 });
    const b = member(kv, "host-b");
    await a.joinNetwork(VNI, CONFIG, { fresh: true });
    await b.joinNetwork(VNI, CONFIG);
    b.setLocalNames(VNI, new Map([["f1", WEB2]]));
    a.setLocalNames(VNI, new Map([["e1", WEB1]]));
    await a.namesSettled(VNI);
    await b.namesSettled(VNI);
    // Someone deleted A's entry and wrote a stray one under A's prefix (a restore, a person).
    await kv.delete(`${NAMES}host-a/e1`);
    await kv.put(`${NAMES}host-a/stray`, value(WEB2));
    await eventually(async () => assert.deepEqual(await stored(kv), { e1: value(WEB1) }));
    assert.deepEqual(await stored(kv, "host-b"), { f1: value(WEB2) }, "B's names untouched");
  });

  it("names written under an earlier lease move to the current one", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const old = await kv.grantLease(15);
    // The previous process of host a published e1 and e9; the new one has only e1.
    await kv.put(`${NAMES}host-a/e1`, value(WEB1), old);
    await kv.put(`${NAMES}host-a/e9`, value(WEB2), old);
    const a = member(kv, "host-a");
    await a.joinNetwork(VNI, CONFIG);
    await sleep(30);
    assert.deepEqual(
      Object.keys(await stored(kv)),
      ["e1", "e9"],
      "left alone until this host says which names it has",
    );
    a.setLocalNames(VNI, new Map([["e1", WEB1]]));
    await a.namesSettled(VNI);
    assert.deepEqual(await stored(kv), { e1: value(WEB1) });
    kv.expireLease(old);
    assert.deepEqual(await stored(kv), { e1: value(WEB1) }, "not on the old lease any more");
  });

  it("one network's failure never stops the others'", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = member(kv, "host-a");
    await a.joinNetwork(VNI, CONFIG, { fresh: true });
    await a.joinNetwork(4243, CONFIG, { fresh: true });
    const put = kv.put.bind(kv);
    let broken = true;
    kv.put = (key: string, text: string, lease?: string) => {
      if (broken && key.startsWith("switchyard/v1/networks/4243/")) {
        return Promise.reject(new Error("etcd: request too large"));
      }
      return put(key, text, lease);
    };
    a.setLocalNames(4243, new Map([["e2", WEB2]]));
    a.setLocalNames(VNI, new Map([["e1", WEB1]]));
    await a.namesSettled(VNI);
    assert.deepEqual(await stored(kv), { e1: value(WEB1) });
    await eventually(() =>
      assert.deepEqual(a.namesOutOfSync(), [{ vni: 4243, reason: "etcd: request too large" }]),
    );
    a.setLocalNames(VNI, new Map());
    await a.namesSettled(VNI);
    assert.deepEqual(await stored(kv), {});
    broken = false;
    await a.namesSettled(4243);
    assert.deepEqual(await stored(kv, "host-a", 4243), { e2: value(WEB2) });
    assert.deepEqual(a.namesOutOfSync(), []);
  });

  it("a fresh join clears names a failed leave left under the live lease", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = member(kv, "host-a");
    await a.joinNetwork(VNI, CONFIG, { fresh: true });
    await a.joinNetwork(4243, CONFIG, { fresh: true }); // keeps the lease alive
    a.setLocalNames(VNI, new Map([["e1", WEB1]]));
    await a.namesSettled(VNI);
    kv.unavailable = true;
    await assert.rejects(a.leaveNetwork(VNI));
    kv.unavailable = false;
    await a.joinNetwork(VNI, CONFIG, { fresh: true });
    await a.namesSettled(VNI);
    assert.deepEqual(await stored(kv), {});
  });

  it("names of a network not joined are ignored", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = member(kv, "host-a");
    a.setLocalNames(VNI, new Map([["e1", WEB1]]));
    await a.namesSettled(VNI);
    assert.deepEqual(await kv.range(""), []);
    // Nor kept for later: joining afterwards publishes nothing until the set is given again.
    await a.joinNetwork(VNI, CONFIG);
    await a.namesSettled(VNI);
    await sleep(30);
    assert.deepEqual(await stored(kv), {});
    a.setLocalNames(VNI, new Map([["e2", WEB2]]));
    await a.namesSettled(VNI);
    assert.deepEqual(await stored(kv), { e2: value(WEB2) });
  });

  it("a lost lease: the names come back under the new one", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = member(kv, "host-a");
    await a.joinNetwork(VNI, CONFIG, { fresh: true });
    a.setLocalNames(VNI, new Map([["e1", WEB1]]));
    await a.namesSettled(VNI);
    for (const lease of kv.leases) kv.expireLease(lease);
    assert.deepEqual(await stored(kv), {});
    assert.equal(await a.renewLease(), true);
    await a.namesSettled(VNI);
    assert.deepEqual(await stored(kv), { e1: value(WEB1) });
  });
});

describe("the same name set again", () => {
  it("runs no pass: a publisher hands over its whole set on every change", TIMEOUT, async () => {
    // One endpoint change made the publisher hand every network's set over again, and each
    // set cost a pass (a listing and writes in etcd) per network, changed or not.
    const kv = new MemoryKeyValueStore();
    const a = member(kv, "host-a", { namesResyncMs: 60_000 });
    await a.joinNetwork(VNI, CONFIG, { fresh: true });
    const names = new Map<string, NameRecord>([["e1", { names: ["web1"], ipv4: "10.60.0.5" }]]);
    a.setLocalNames(VNI, names);
    await a.namesSettled(VNI);
    let listings = 0;
    const range = kv.range.bind(kv);
    kv.range = async (prefix: string) => {
      if (prefix.startsWith(NAMES)) listings += 1;
      return range(prefix);
    };
    a.setLocalNames(VNI, new Map(names));
    await a.namesSettled(VNI);
    assert.equal(listings, 0, "the same set: no pass");
    a.setLocalNames(VNI, new Map([["e1", { names: ["web1", "front"], ipv4: "10.60.0.5" }]]));
    await a.namesSettled(VNI);
    assert.equal(listings, 1, "a changed set: one pass");
    assert.match((await stored(kv)).e1 ?? "", /front/);
  });
});

describe("planNameWrites", () => {
  it("puts what is missing, different or on another lease; deletes the rest", TIMEOUT, () => {
    const prefix = "p/names/h/";
    const desired = new Map([
      ["same", WEB1],
      ["changed", WEB1],
      ["moved", WEB1],
      ["missing", WEB2],
    ]);
    const present = [
      { key: `${prefix}same`, value: value(WEB1), lease: "7" },
      { key: `${prefix}changed`, value: value(WEB2), lease: "7" },
      { key: `${prefix}moved`, value: value(WEB1), lease: "6" },
      { key: `${prefix}extra`, value: value(WEB1), lease: "7" },
      { key: `${prefix}odd/key`, value: value(WEB1), lease: "7" },
    ];
    assert.deepEqual(planNameWrites(desired, present, prefix, "7"), [
      { type: "put", key: `${prefix}changed`, value: value(WEB1) },
      { type: "put", key: `${prefix}moved`, value: value(WEB1) },
      { type: "put", key: `${prefix}missing`, value: value(WEB2) },
      { type: "delete", key: `${prefix}extra` },
      { type: "delete", key: `${prefix}odd/key` },
    ]);
  });
});

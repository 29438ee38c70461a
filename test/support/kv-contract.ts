import assert from "node:assert/strict";
import type { KeyValueStore } from "../../src/cluster/kv.ts";

/**
 * What Switchyard needs of a transaction, run against a store: compares on a key's absence,
 * on a value and on a prefix's revisions, then writes atomically. The same scenario runs
 * against real etcd (netns tier) and the in-memory fake (unit tier), so the fake stays true.
 */
export async function txnContract(kv: KeyValueStore): Promise<void> {
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
}

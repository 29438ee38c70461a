import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CHUNK_BITS, SparseBitmap } from "../../src/ipam/bitmap.ts";

const C = BigInt(CHUNK_BITS);

describe("SparseBitmap", () => {
  test("set, has, clear and count", () => {
    const bitmap = new SparseBitmap(1n << 16n);
    assert.equal(bitmap.set(5n), true);
    assert.equal(bitmap.set(5n), false);
    assert.equal(bitmap.has(5n), true);
    assert.equal(bitmap.has(6n), false);
    assert.equal(bitmap.count, 1);
    assert.equal(bitmap.clear(6n), false);
    assert.equal(bitmap.clear(5n), true);
    assert.equal(bitmap.count, 0);
    assert.deepEqual(bitmap.encode(), {}, "an emptied chunk is dropped");
  });

  test("set refuses a bit outside the range", () => {
    const bitmap = new SparseBitmap(8n);
    assert.throws(() => bitmap.set(8n), RangeError);
    assert.throws(() => bitmap.set(-1n), RangeError);
  });

  test("findClear skips full chunks and stops at the bound", () => {
    const bitmap = new SparseBitmap(4n * C);
    for (let bit = 0n; bit < 2n * C + 3n; bit++) bitmap.set(bit);
    assert.equal(bitmap.findClear(0n, 4n * C - 1n), 2n * C + 3n);
    assert.equal(bitmap.findClear(0n, 2n * C + 2n), undefined);
    assert.equal(bitmap.findClear(10n, 10n), undefined);
    bitmap.clear(7n);
    assert.equal(bitmap.findClear(0n, 4n * C - 1n), 7n);
    assert.equal(bitmap.findClear(8n, 4n * C - 1n), 2n * C + 3n);
  });

  test("findClear in a 2^64 range answers at once", () => {
    const bitmap = new SparseBitmap(1n << 64n);
    bitmap.set((1n << 64n) - 1n);
    assert.equal(bitmap.findClear((1n << 64n) - 1n, (1n << 64n) - 1n), undefined);
    assert.equal(bitmap.findClear((1n << 64n) - 2n, (1n << 64n) - 1n), (1n << 64n) - 2n);
    assert.equal(bitmap.findClear(0n, (1n << 64n) - 1n), 0n);
  });

  test("encode trims trailing zero bytes; decode restores exactly", () => {
    const bitmap = new SparseBitmap(1n << 24n);
    bitmap.set(1n);
    bitmap.set(3n * C + 9n);
    const encoded = bitmap.encode();
    assert.deepEqual(encoded, { "0": "Ag==", "3": "AAI=" });
    const copy = SparseBitmap.decode(1n << 24n, encoded);
    assert.equal(copy.count, 2);
    assert.equal(copy.has(1n), true);
    assert.equal(copy.has(3n * C + 9n), true);
    assert.deepEqual(copy.encode(), encoded);
  });

  test("clone is independent", () => {
    const bitmap = new SparseBitmap(64n);
    bitmap.set(1n);
    const copy = bitmap.clone();
    copy.set(2n);
    assert.equal(bitmap.has(2n), false);
    assert.equal(copy.count, 2);
  });

  const corrupt: [name: string, size: bigint, chunks: Record<string, string>][] = [
    ["a non-numeric key", 1n << 16n, { x: "AQ==" }],
    ["a key with a leading zero", 1n << 16n, { "01": "AQ==" }],
    ["a chunk past the end", 1n << 12n, { "1": "AQ==" }],
    ["bad base64", 1n << 16n, { "0": "!!!" }],
    ["base64 without padding", 1n << 16n, { "0": "AQ" }],
    ["a chunk too long", 1n << 16n, { "0": Buffer.alloc(513, 1).toString("base64") }],
    ["a bit past the end of a small range", 8n, { "0": "AAE=" }],
  ];
  for (const [name, size, chunks] of corrupt) {
    test(`decode refuses ${name}`, () => {
      assert.throws(() => SparseBitmap.decode(size, chunks), Error);
    });
  }
});

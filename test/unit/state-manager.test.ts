import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { FileStore } from "../../src/state/store.ts";
import { MemoryStore } from "../support/memory-store.ts";

const POOL = { addressSpace: "LocalDefault", pool: "10.1.0.0/24", v6: false };

describe("StateManager", () => {
  it("saves a burst of concurrent changes with one write, answering each after it", async () => {
    const store = new MemoryStore();
    const state = await StateManager.open(store, defaultIpamSettings());
    const { poolId } = await state.commit((_document, ipam) => ipam.requestPool(POOL));
    assert.equal(store.saves, 1);
    const addresses = await Promise.all(
      Array.from({ length: 20 }, () =>
        state.commit((_document, ipam) => ipam.requestAddress(poolId, {})),
      ),
    );
    assert.equal(new Set(addresses).size, 20);
    assert.ok(store.saves <= 3, `${store.saves} saves for 20 concurrent changes`);
    const reloaded = await StateManager.open(store, defaultIpamSettings());
    assert.equal(reloaded.ipam.pool(poolId)?.allocatedCount, 20);
  });

  it("a failing change is undone without touching the others of its batch", async () => {
    const store = new MemoryStore();
    const state = await StateManager.open(store, defaultIpamSettings());
    const { poolId } = await state.commit((_document, ipam) => ipam.requestPool(POOL));
    const results = await Promise.allSettled([
      state.commit((_document, ipam) => ipam.requestAddress(poolId, { address: "10.1.0.5" })),
      state.commit((document, ipam) => {
        ipam.requestAddress(poolId, { address: "10.1.0.6" });
        document.networks.x = {} as never;
        throw new Error("boom");
      }),
      state.commit((_document, ipam) => ipam.requestAddress(poolId, { address: "10.1.0.7" })),
    ]);
    assert.deepEqual(
      results.map((result) => result.status),
      ["fulfilled", "rejected", "fulfilled"],
    );
    assert.equal(state.ipam.isAllocated(poolId, "10.1.0.6"), false);
    assert.equal(state.document.networks.x, undefined);
    const reloaded = await StateManager.open(store, defaultIpamSettings());
    assert.deepEqual(
      ["10.1.0.5", "10.1.0.6", "10.1.0.7"].map((address) =>
        reloaded.ipam.isAllocated(poolId, address),
      ),
      [true, false, true],
    );
  });

  it("a failed save fails the change and leaves the last saved state in force", async () => {
    const store = new MemoryStore();
    const state = await StateManager.open(store, defaultIpamSettings());
    const { poolId } = await state.commit((_document, ipam) => ipam.requestPool(POOL));
    store.failNextSave = true;
    await assert.rejects(
      state.commit((_document, ipam) => ipam.requestAddress(poolId, {})),
      /disk full/,
    );
    assert.equal(state.ipam.pool(poolId)?.allocatedCount, 0);
  });

  it("does not write when a change changes nothing", async () => {
    const store = new MemoryStore();
    const state = await StateManager.open(store, defaultIpamSettings());
    await state.commit(() => undefined);
    assert.equal(store.saves, 0);
  });

  it("the file store appends each change to its journal and folds it into state.json at close", async () => {
    const directory = await mkdtemp(join(tmpdir(), "switchyard-state-"));
    try {
      const store = new FileStore(directory);
      const state = await StateManager.open(store, defaultIpamSettings());
      const { poolId } = await state.commit((_document, ipam) => ipam.requestPool(POOL));
      await state.commit((_document, ipam) => ipam.requestAddress(poolId, {}));
      assert.deepEqual(await readdir(directory), ["state.journal"]);
      await state.close();
      assert.deepEqual((await readdir(directory)).sort(), ["state.journal", "state.json"]);
      assert.equal(await readFile(join(directory, "state.journal"), "utf8"), "");
      const saved = JSON.parse(await readFile(join(directory, "state.json"), "utf8"));
      assert.equal(saved.version, 1);
      const reloaded = await StateManager.open(new FileStore(directory), defaultIpamSettings());
      assert.equal(reloaded.ipam.pool(poolId)?.allocatedCount, 1);
      await reloaded.close();
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it("refuses a state file from a newer Switchyard with a clear error", async () => {
    const directory = await mkdtemp(join(tmpdir(), "switchyard-state-"));
    try {
      const { writeFile } = await import("node:fs/promises");
      await writeFile(join(directory, "state.json"), JSON.stringify({ version: 2 }));
      await assert.rejects(
        new FileStore(directory).load(),
        /has version 2; this Switchyard reads version 1/,
      );
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFile, copyFile, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import type { EndpointRecord } from "../../src/state/model.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { FileStore } from "../../src/state/store.ts";

const POOL = { addressSpace: "LocalDefault", pool: "10.2.0.0/16", v6: false };

function endpoint(id: string, address: string): EndpointRecord {
  return {
    id,
    networkId: "n1",
    hostVeth: `vsy${id}`,
    peerVeth: `csy${id}`,
    mac: "02:42:0a:02:00:02",
    address,
    ports: [],
  };
}

async function withDirectory(body: (directory: string) => Promise<void>): Promise<void> {
  const directory = await mkdtemp(join(tmpdir(), "switchyard-journal-"));
  try {
    await body(directory);
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** A state with a pool and `count` endpoints, committed one by one through a FileStore. */
async function populate(directory: string, count: number, compactBytes?: number) {
  const store = new FileStore(directory, compactBytes === undefined ? {} : { compactBytes });
  const state = await StateManager.open(store, defaultIpamSettings());
  const { poolId } = await state.commit((_document, ipam) => ipam.requestPool(POOL));
  for (let i = 0; i < count; i++) {
    await state.commit((document, ipam) => {
      document.endpoints[`e${i}`] = endpoint(`e${i}`, ipam.requestAddress(poolId, {}));
    });
  }
  return { store, state, poolId };
}

const journalPath = (directory: string) => join(directory, "state.journal");

describe("FileStore journal", () => {
  it("writes per change what the change touched, not the whole state", async () => {
    await withDirectory(async (directory) => {
      const { store, state, poolId } = await populate(directory, 500);
      const before = (await stat(journalPath(directory))).size;
      await state.commit((document, ipam) => {
        document.endpoints.extra = endpoint("extra", ipam.requestAddress(poolId, {}));
      });
      const line = (await stat(journalPath(directory))).size - before;
      // One endpoint record and one pool's bitmap (500 addresses: ~70 bytes of base64).
      assert.ok(line < 700, `one change wrote ${line} bytes`);
      const text = await readFile(journalPath(directory), "utf8");
      const last = JSON.parse(text.trimEnd().split("\n").at(-1) ?? "");
      assert.deepEqual(
        last.changes.map((change: { path: string[] }) => change.path),
        [
          ["endpoints", "extra"],
          ["ipam", "pools", poolId],
        ],
      );
      await store.abandon();
    });
  });

  it("a change removing a record journals its path without a value", async () => {
    await withDirectory(async (directory) => {
      const { store, state } = await populate(directory, 2);
      await state.commit((document) => {
        delete document.endpoints.e0;
      });
      const text = await readFile(journalPath(directory), "utf8");
      assert.deepEqual(JSON.parse(text.trimEnd().split("\n").at(-1) ?? "").changes, [
        { path: ["endpoints", "e0"] },
      ]);
      await store.abandon();
      const reloaded = await new FileStore(directory).load();
      assert.deepEqual(Object.keys(reloaded?.endpoints ?? {}), ["e1"]);
    });
  });

  it("kill -9 at any point loses no answered change (a real child process)", async () => {
    await withDirectory(async (directory) => {
      const writer = fileURLToPath(new URL("../support/journal-writer.ts", import.meta.url));
      const child = spawn(process.execPath, [writer, directory], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      const answered: string[] = [];
      let buffered = "";
      await new Promise<void>((resolve, reject) => {
        child.on("error", reject);
        child.stdout.setEncoding("utf8");
        child.stdout.on("data", (chunk: string) => {
          buffered += chunk;
          const lines = buffered.split("\n");
          buffered = lines.pop() ?? "";
          answered.push(...lines);
          // Past a few compactions (4 KiB each), killed wherever it happens to be.
          if (answered.length >= 300 && child.exitCode === null) child.kill("SIGKILL");
        });
        child.on("exit", () => resolve());
      });
      assert.ok(answered.length >= 300, `only ${answered.length} answered before exit`);
      const document = await new FileStore(directory).load();
      const missing = answered.filter((id) => document?.endpoints[id] === undefined);
      assert.deepEqual(missing, [], "answered endpoints missing after kill -9");
      const addresses = Object.values(document?.endpoints ?? {}).map((item) => item.address);
      assert.equal(new Set(addresses).size, addresses.length, "an address given twice");
      const pools = Object.values(document?.ipam.pools ?? {});
      assert.equal(pools.length, 1);
    });
  });

  it("a torn last line (an append cut short) is dropped; everything before it loads", async () => {
    await withDirectory(async (directory) => {
      const { store } = await populate(directory, 3);
      await store.abandon();
      await appendFile(journalPath(directory), '{"v":1,"changes":[{"path":["endpoints","e9"],"va');
      const document = await new FileStore(directory).load();
      assert.deepEqual(Object.keys(document?.endpoints ?? {}), ["e0", "e1", "e2"]);
      // Loading folded the journal: the torn bytes are gone before anything is appended.
      assert.equal(await readFile(journalPath(directory), "utf8"), "");
      const again = await StateManager.open(new FileStore(directory), defaultIpamSettings());
      await again.commit((state) => {
        state.endpoints.e3 = endpoint("e3", "10.2.0.9/16");
      });
      await again.close();
      const last = await new FileStore(directory).load();
      assert.deepEqual(Object.keys(last?.endpoints ?? {}), ["e0", "e1", "e2", "e3"]);
    });
  });

  it("a tail of zeros (file grown, data never written) is dropped too", async () => {
    await withDirectory(async (directory) => {
      const { store } = await populate(directory, 2);
      await store.abandon();
      await appendFile(journalPath(directory), Buffer.alloc(64));
      const document = await new FileStore(directory).load();
      assert.deepEqual(Object.keys(document?.endpoints ?? {}), ["e0", "e1"]);
    });
  });

  it("a damaged line with good lines after it is refused, not skipped", async () => {
    await withDirectory(async (directory) => {
      const { store } = await populate(directory, 3);
      await store.abandon();
      const lines = (await readFile(journalPath(directory), "utf8")).split("\n");
      lines[1] = "{garbage";
      await writeFile(journalPath(directory), lines.join("\n"));
      await assert.rejects(new FileStore(directory).load(), /damaged at line 2/);
    });
  });

  it("a journal line from a newer Switchyard is refused", async () => {
    await withDirectory(async (directory) => {
      await writeFile(journalPath(directory), '{"v":2,"changes":[]}\n');
      await assert.rejects(
        new FileStore(directory).load(),
        /has version 2; this Switchyard reads version 1/,
      );
    });
  });

  it("compaction crash after the snapshot, before the journal was emptied: loads the same", async () => {
    await withDirectory(async (directory) => {
      const { store, state } = await populate(directory, 20);
      await store.abandon();
      const saved = join(directory, "journal.copy");
      await copyFile(journalPath(directory), saved);
      const expected = JSON.stringify(state.document);
      // Fold (snapshot written, journal emptied), then put the journal back as a crash would
      // have left it: replaying it over a snapshot that holds it must change nothing.
      const folding = new FileStore(directory);
      await folding.close((await folding.load()) ?? assert.fail("no state"));
      await copyFile(saved, journalPath(directory));
      const document = await new FileStore(directory).load();
      assert.equal(JSON.stringify(document), expected);
    });
  });

  it("compaction crash before the snapshot's rename: the old snapshot and the journal load", async () => {
    await withDirectory(async (directory) => {
      const first = await populate(directory, 5);
      await first.state.close(); // state.json holds e0..e4, the journal is empty
      const again = await StateManager.open(new FileStore(directory), defaultIpamSettings());
      await again.commit((state) => {
        state.endpoints.e5 = endpoint("e5", "10.2.0.50/16");
        delete state.endpoints.e0;
      });
      // A crash while the next snapshot was being written: its temp file is all there is.
      await writeFile(join(directory, "state.json.12345.tmp"), '{"version":1,"ipam":');
      const document = await new FileStore(directory).load();
      assert.deepEqual(Object.keys(document?.endpoints ?? {}).sort(), [
        "e1",
        "e2",
        "e3",
        "e4",
        "e5",
      ]);
    });
  });

  it("compacts by itself once the journal outgrows the threshold and the snapshot", async () => {
    await withDirectory(async (directory) => {
      const { store, state } = await populate(directory, 200, 2048);
      const journal = (await stat(journalPath(directory))).size;
      const snapshot = (await stat(join(directory, "state.json"))).size;
      assert.ok(journal < Math.max(2048, snapshot) + 1024, `journal ${journal} bytes`);
      await store.abandon();
      const document = await new FileStore(directory).load();
      assert.equal(JSON.stringify(document), JSON.stringify(state.document));
    });
  });
});

/**
 * Growth without Docker: what one state change costs at N endpoints, with the journal
 * (FileStore as it is) and with what the store did before (stringify the whole document twice,
 * write it whole: temp file, fsync, rename, fsync of the directory), on the same disk in the
 * same run, interleaved. Prints min / median / max per N over RUNS runs.
 *
 *   node bench/store.ts [RUNS] [N,N,...]     (defaults: 5 runs; 1,100,1000,10000 endpoints)
 */
import { mkdtemp, open, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { defaultIpamSettings, Ipam } from "../src/ipam/ipam.ts";
import { type EndpointRecord, emptyState, type StateDocument } from "../src/state/model.ts";
import { StateManager } from "../src/state/state-manager.ts";
import { FileStore } from "../src/state/store.ts";
import { quantile } from "./lib/stats.ts";

const runs = Number(process.argv[2] ?? 5);
const counts = (process.argv[3] ?? "1,100,1000,10000").split(",").map(Number);
const COMMITS = 50;
const POOL = { addressSpace: "LocalDefault", pool: "10.64.0.0/14", v6: false };

function endpoint(id: string, address: string): EndpointRecord {
  return {
    id,
    networkId: "n".repeat(64),
    hostVeth: `vsy${id.slice(0, 11)}`,
    peerVeth: `csy${id.slice(0, 11)}`,
    mac: "02:42:0a:40:00:02",
    address,
    ports: [],
  };
}

/** A document with `count` endpoints and their addresses, as a busy host has. */
function populated(count: number): { document: StateDocument; poolId: string } {
  const ipam = new Ipam(defaultIpamSettings());
  const { poolId } = ipam.requestPool(POOL);
  const document = emptyState();
  for (let i = 0; i < count; i++) {
    const id = i.toString(16).padStart(64, "0");
    document.endpoints[id] = endpoint(id, ipam.requestAddress(poolId, {}));
  }
  document.ipam = ipam.snapshot();
  return { document, poolId };
}

/** The journal: one commit adding an endpoint, as CreateEndpoint + RequestAddress do. */
async function journal(count: number): Promise<{ ms: number[]; bytes: number[] }> {
  const directory = await mkdtemp(join(tmpdir(), "sybench-store-"));
  try {
    const { document, poolId } = populated(count);
    const seed = new FileStore(directory);
    await seed.close(document);
    const store = new FileStore(directory);
    const state = await StateManager.open(store, defaultIpamSettings());
    const ms: number[] = [];
    const bytes: number[] = [];
    const size = async () => (await stat(join(directory, "state.journal"))).size;
    for (let i = 0; i < COMMITS; i++) {
      const before = await size();
      const id = `f${i}`.padStart(64, "f");
      const started = performance.now();
      await state.commit((doc, ipam) => {
        doc.endpoints[id] = endpoint(id, ipam.requestAddress(poolId, {}));
      });
      ms.push(performance.now() - started);
      // A compaction empties the journal: count the snapshot it wrote instead.
      const after = await size();
      bytes.push(
        after >= before ? after - before : (await stat(join(directory, "state.json"))).size,
      );
    }
    await store.abandon();
    return { ms, bytes };
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** What every commit did before: stringify twice, write the whole document atomically. */
async function wholeDocument(count: number): Promise<{ ms: number[]; bytes: number[] }> {
  const directory = await mkdtemp(join(tmpdir(), "sybench-store-"));
  try {
    const { document, poolId } = populated(count);
    const ipam = new Ipam(defaultIpamSettings(), document.ipam);
    const ms: number[] = [];
    const bytes: number[] = [];
    for (let i = 0; i < COMMITS; i++) {
      const id = `f${i}`.padStart(64, "f");
      const started = performance.now();
      JSON.stringify(document); // the copy kept to roll a throwing change back
      document.endpoints[id] = endpoint(id, ipam.requestAddress(poolId, {}));
      document.ipam = ipam.snapshot();
      const text = JSON.stringify(document);
      const target = join(directory, "state.json");
      const file = await open(`${target}.tmp`, "w", 0o600);
      await file.writeFile(text);
      await file.sync();
      await file.close();
      await rename(`${target}.tmp`, target);
      const dir = await open(directory, "r");
      await dir.sync();
      await dir.close();
      ms.push(performance.now() - started);
      bytes.push(Buffer.byteLength(text));
    }
    return { ms, bytes };
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

const median = (values: number[]) => quantile(values, 0.5);
const spread = (values: number[], digits: number) =>
  `${Math.min(...values).toFixed(digits)} / ${median(values).toFixed(digits)} / ${Math.max(...values).toFixed(digits)}`;

console.log(
  `one commit adding an endpoint, ${COMMITS} commits per run, ${runs} runs (min / median / max of the run medians)`,
);
console.log(
  "N".padEnd(7),
  "journal ms".padEnd(22),
  "whole-document ms".padEnd(24),
  "ratio".padEnd(20),
  "journal B/change".padEnd(18),
  "whole-document B/change",
);
for (const count of counts) {
  const newMs: number[] = [];
  const oldMs: number[] = [];
  const newBytes: number[] = [];
  const oldBytes: number[] = [];
  for (let run = 0; run < runs; run++) {
    // Interleaved: A B, then B A, so drift of a noisy machine hits both alike.
    let fresh: { ms: number[]; bytes: number[] };
    let before: { ms: number[]; bytes: number[] };
    if (run % 2 === 0) {
      fresh = await journal(count);
      before = await wholeDocument(count);
    } else {
      before = await wholeDocument(count);
      fresh = await journal(count);
    }
    newMs.push(median(fresh.ms));
    oldMs.push(median(before.ms));
    newBytes.push(median(fresh.bytes));
    oldBytes.push(median(before.bytes));
  }
  const ratios = newMs.map((value, i) => value / (oldMs[i] ?? Number.NaN));
  console.log(
    String(count).padEnd(7),
    spread(newMs, 2).padEnd(22),
    spread(oldMs, 2).padEnd(24),
    spread(ratios, 2).padEnd(20),
    String(median(newBytes)).padEnd(18),
    String(median(oldBytes)),
  );
}

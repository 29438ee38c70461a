// Runs bench/ipam.ts's benchIpam() in a process of its own (start it with --expose-gc): one
// warm-up call (the first call's heap figure includes V8 compiling the allocator, ~100 KB),
// then five, and prints the median of each figure as JSON. benchIpam's heap figure (one
// allocator) is within the heap's own noise (tens of KB), so this also holds KEPT allocators
// of 60,000 addresses each at once and reports the heap per allocator: a figure that
// resolves "grows with bits" (a /16 is 8 KiB of bits) from "grows with addresses".
import { defaultIpamSettings, Ipam } from "../src/ipam/ipam.ts";
import { benchIpam } from "./ipam.ts";
import { median } from "./lib/stats.ts";

const KEPT = 20;
const ADDRESSES = 60_000;

if (typeof globalThis.gc !== "function") {
  console.error("bench/ipam-run.ts: start node with --expose-gc for a meaningful heap figure");
}

function heapPerAllocator(): number {
  globalThis.gc?.();
  const before = process.memoryUsage().heapUsed;
  const kept: Ipam[] = [];
  for (let i = 0; i < KEPT; i++) {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({
      addressSpace: Ipam.localAddressSpace,
      pool: "10.20.0.0/16",
      v6: false,
    });
    for (let n = 0; n < ADDRESSES; n++) ipam.requestAddress(poolId, {});
    kept.push(ipam);
  }
  globalThis.gc?.();
  const after = process.memoryUsage().heapUsed;
  if (kept.length !== KEPT) throw new Error("unreachable");
  return (after - before) / KEPT;
}

benchIpam();
const runs = Array.from({ length: 5 }, () => benchIpam());
const keys = Object.keys(runs[0] ?? {});
const result: Record<string, number> = Object.fromEntries(
  keys.map((key) => [key, median(runs.map((figures) => figures[key] ?? Number.NaN))]),
);
heapPerAllocator();
result.heapPer60kKeptBytes = median([heapPerAllocator(), heapPerAllocator(), heapPerAllocator()]);
console.log(JSON.stringify(result));

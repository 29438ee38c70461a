// IPAM core benchmark: RequestAddress latency and heap with 60,000 addresses in a /16, and
// automatic allocation of 1,000 pools. Prints figures; targets are checked by bench/run.ts.
import { performance } from "node:perf_hooks";
import { defaultIpamSettings, Ipam, parseDefaultPools } from "../src/ipam/ipam.ts";

const local = Ipam.localAddressSpace;

function percentiles(times: number[]): { p50: number; p99: number } {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
  return { p50: at(0.5), p99: at(0.99) };
}

function timed(n: number, step: (i: number) => void): { p50: number; p99: number } {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    step(i);
    times.push(performance.now() - start);
  }
  return percentiles(times);
}

/** Runs the IPAM benchmarks and returns their figures (milliseconds and bytes). */
export function benchIpam(): Record<string, number> {
  globalThis.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const ipam = new Ipam(defaultIpamSettings());
  const { poolId } = ipam.requestPool({ addressSpace: local, pool: "10.20.0.0/16", v6: false });
  const fill = timed(60_000, () => ipam.requestAddress(poolId, {}));
  globalThis.gc?.();
  const heapAfter = process.memoryUsage().heapUsed;
  const snapshotBytes = JSON.stringify(ipam.snapshot()).length;
  const churn = timed(2_000, (i) => {
    ipam.releaseAddress(poolId, `10.20.${(i * 7) % 200}.${(i * 13) % 250}`);
    ipam.requestAddress(poolId, {});
  });
  const pools = new Ipam({
    defaultPoolsV4: parseDefaultPools("10.0.0.0/8:24"),
    defaultPoolsV6: defaultIpamSettings().defaultPoolsV6,
  });
  const started = performance.now();
  const auto = timed(1_000, () => pools.requestPool({ addressSpace: local, v6: false }));
  const autoTotal = performance.now() - started;
  return {
    requestAddressP50Ms: fill.p50,
    requestAddressP99Ms: fill.p99,
    churnP99Ms: churn.p99,
    heapFor60kBytes: heapAfter - heapBefore,
    snapshotFor60kBytes: snapshotBytes,
    autoPoolP99Ms: auto.p99,
    autoPools1000TotalMs: autoTotal,
  };
}

if (import.meta.main) console.log(JSON.stringify(benchIpam(), null, 2));

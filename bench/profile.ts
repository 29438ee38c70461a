/**
 * Where `docker run` time goes on the Switchyard path, from the plugin's own log lines in
 * dockerd's log: one line per request (durationMs) and, at LOG_LEVEL=debug, one per `ip`/`nft`/
 * `iptables` command (durationMs). Runs N `docker run --rm … true` on a Switchyard network and
 * N on a bridge network (interleaved), then prints per docker run: wall time of both drivers,
 * each plugin request, and each command (attributed to the request it ran in).
 *
 *   node bench/profile.ts [N=20]            N sequential runs per driver
 *   node bench/profile.ts parallel [N=100]  N containers started at once per driver, then removed
 * (neither is part of `make bench`).
 *
 * If the plugin is not at LOG_LEVEL=debug and no network uses it, it is switched to debug for
 * the run (disable, set, enable) and switched back afterwards.
 */
import { open, stat } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { DOCKERD_LOG } from "../test/e2e/lib/config.ts";
import {
  BUSYBOX,
  benchParallelStart,
  createNetwork,
  type Driver,
  networkName,
  orderFor,
  removeLeftovers,
} from "./containers.ts";
import { docker } from "./lib/exec.ts";
import { PLUGIN, pluginId } from "./lib/plugin.ts";
import { median, quantile } from "./lib/stats.ts";
import { networksUsingPlugin } from "./lifecycle.ts";

const parallel = process.argv[2] === "parallel";
const runs = Number((parallel ? process.argv[3] : process.argv[2]) ?? (parallel ? 100 : 20));

interface PluginLine {
  time: number;
  msg: string;
  endpoint?: string;
  durationMs?: number;
  argv?: string[];
}

async function logLevel(): Promise<string> {
  const env = JSON.parse(
    await docker(["plugin", "inspect", "-f", "{{json .Settings.Env}}", PLUGIN]),
  ) as string[];
  return env.find((item) => item.startsWith("LOG_LEVEL="))?.slice("LOG_LEVEL=".length) ?? "info";
}

async function setLogLevel(level: string): Promise<void> {
  await docker(["plugin", "disable", "-f", PLUGIN]);
  await docker(["plugin", "set", PLUGIN, `LOG_LEVEL=${level}`]);
  await docker(["plugin", "enable", PLUGIN]);
}

/** The plugin's JSON lines that dockerd wrote to its log after byte `from`. */
async function pluginLines(from: number, id: string): Promise<PluginLine[]> {
  const file = await open(DOCKERD_LOG, "r");
  try {
    const size = (await file.stat()).size;
    const buffer = Buffer.alloc(size - from);
    await file.read(buffer, 0, buffer.length, from);
    const lines: PluginLine[] = [];
    for (const text of buffer.toString("utf8").split("\n")) {
      if (!text.includes(`plugin=${id}`)) continue;
      const match = /msg="((?:[^"\\]|\\.)*)"/.exec(text);
      if (match === null) continue;
      try {
        const inner = JSON.parse(`"${match[1]}"`) as string;
        lines.push(JSON.parse(inner) as PluginLine);
      } catch {
        // not one of the plugin's JSON lines
      }
    }
    return lines;
  } finally {
    await file.close();
  }
}

/** `ip link add name vsy0123… type veth …` → `ip link add name vsy* type veth …`. */
function commandKey(argv: readonly string[]): string {
  return argv
    .join(" ")
    .replace(/\b(vsy|csy)[0-9a-f]+/g, "$1*")
    .replace(/\bsy-[0-9a-f]{12}\b/g, "sy-*")
    .replace(/\b([0-9a-f]{2}:){5}[0-9a-f]{2}\b/g, "MAC")
    .slice(0, 90);
}

interface Stat {
  count: number;
  durations: number[];
}

function add(map: Map<string, Stat>, key: string, duration: number): void {
  let entry = map.get(key);
  if (entry === undefined) {
    entry = { count: 0, durations: [] };
    map.set(key, entry);
  }
  entry.count += 1;
  entry.durations.push(duration);
}

function print(title: string, map: Map<string, Stat>, perRun: number): void {
  const rows = [...map].sort(
    (a, b) => b[1].durations.reduce((s, d) => s + d, 0) - a[1].durations.reduce((s, d) => s + d, 0),
  );
  console.log(`\n${title}`);
  console.log(
    `${"".padEnd(92)}${"per run".padStart(8)}${"p50 ms".padStart(9)}${"p90 ms".padStart(9)}${"ms/run".padStart(9)}`,
  );
  for (const [key, entry] of rows) {
    const total = entry.durations.reduce((s, d) => s + d, 0);
    console.log(
      `${key.padEnd(92)}${(entry.count / perRun).toFixed(1).padStart(8)}${median(entry.durations).toFixed(1).padStart(9)}${quantile(entry.durations, 0.9).toFixed(1).padStart(9)}${(total / perRun).toFixed(1).padStart(9)}`,
    );
  }
}

async function main(): Promise<void> {
  const id = await pluginId();
  const previous = await logLevel();
  let switched = false;
  if (previous !== "debug") {
    const users = await networksUsingPlugin();
    if (users.length > 0) {
      console.error(
        `LOG_LEVEL is ${previous} and networks use the plugin (${users.join(", ")}): only requests can be profiled`,
      );
    } else {
      await setLogLevel("debug");
      switched = true;
    }
  }
  const walls: Record<Driver, number[]> = { switchyard: [], bridge: [] };
  let from = 0;
  try {
    await removeLeftovers();
    for (const driver of ["switchyard", "bridge"] as const) await createNetwork(driver);
    // Warm up both paths, then start reading the log.
    for (const driver of ["switchyard", "bridge"] as const) {
      await docker(["run", "--rm", "--network", networkName(driver), BUSYBOX, "true"]);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    from = (await stat(DOCKERD_LOG)).size;
    if (parallel) {
      for (const driver of orderFor(0)) {
        walls[driver].push((await benchParallelStart(driver, runs)).wallMs);
      }
    } else {
      for (let i = 0; i < runs; i++) {
        for (const driver of orderFor(i)) {
          const started = performance.now();
          await docker(["run", "--rm", "--network", networkName(driver), BUSYBOX, "true"]);
          walls[driver].push(performance.now() - started);
        }
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  } finally {
    const lines = from === 0 ? [] : await pluginLines(from, id);
    await removeLeftovers();
    if (switched) await setLogLevel(previous);
    report(lines, walls);
  }
}

function report(lines: PluginLine[], walls: Record<Driver, number[]>): void {
  const requests = lines.filter(
    (line) => line.endpoint?.startsWith("/") === true && line.durationMs !== undefined,
  );
  const commands = lines.filter((line) => line.argv !== undefined);
  // A command belongs to the request whose interval [end - duration, end] holds its end.
  const intervals = requests.map((line) => ({
    endpoint: line.endpoint ?? "?",
    start: line.time - (line.durationMs ?? 0),
    end: line.time,
  }));
  const byRequest = new Map<string, Stat>();
  for (const line of requests) add(byRequest, line.endpoint ?? "?", line.durationMs ?? 0);
  const byCommand = new Map<string, Stat>();
  for (const line of commands) {
    // Under concurrency several intervals hold it: the request that ended soonest after the
    // command is the one that waited for it.
    let owner: (typeof intervals)[number] | undefined;
    for (const r of intervals) {
      if (line.time < r.start - 1 || line.time > r.end + 1) continue;
      if (owner === undefined || r.end < owner.end) owner = r;
    }
    const name = owner?.endpoint.split(".")[1] ?? "(none)";
    add(byCommand, `${name.padEnd(22)} ${commandKey(line.argv ?? [])}`, line.durationMs ?? 0);
  }
  const sy = median(walls.switchyard);
  const br = median(walls.bridge);
  const inPlugin = requests.reduce((s, line) => s + (line.durationMs ?? 0), 0) / runs;
  const inCommands = commands.reduce((s, line) => s + (line.durationMs ?? 0), 0) / runs;
  console.log(
    parallel
      ? `${runs} containers started at once (docker run -d … sleep 600) per driver, then removed; "per run" = per container:`
      : `docker run --rm true, ${runs} runs each, interleaved:`,
  );
  console.log(
    `  median wall: switchyard ${sy.toFixed(0)} ms, bridge ${br.toFixed(0)} ms, gap ${(sy - br).toFixed(0)} ms (ratio ${(sy / br).toFixed(3)})`,
  );
  console.log(
    `  plugin time per run (sum of request durations): ${inPlugin.toFixed(1)} ms, of which commands ${inCommands.toFixed(1)} ms`,
  );
  print("requests (per docker run)", byRequest, runs);
  if (commands.length === 0)
    console.log("\n(no command lines: the plugin is not at LOG_LEVEL=debug)");
  else print("commands (request they ran in, argv)", byCommand, runs);
}

await main();

/** Benchmarks through the real Docker daemon: `docker run` latency, 100 parallel starts, iperf3. */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { docker, dockerMayFail } from "./lib/exec.ts";
import { PLUGIN } from "./lib/plugin.ts";
import { median } from "./lib/stats.ts";

/** Everything the bench makes in Docker is named with this prefix. */
export const PREFIX = "sy-bench-";
export const BUSYBOX = "switchyard-test/busybox:latest";
export const IPERF = "switchyard-test/iperf3:latest";

/** The two drivers compared, each with its own network. */
export type Driver = "switchyard" | "bridge";
export const DRIVERS: readonly Driver[] = ["switchyard", "bridge"];

/**
 * This run's tag in network names: Docker 20.10 sometimes keeps a stale endpoint count after
 * many containers are removed at once (moby/moby#42119: "has active endpoints" with none left,
 * cured only by restarting dockerd), so a network of an earlier run may be impossible to
 * remove; each run therefore uses names and subnets of its own.
 */
const RUN_TAG = randomBytes(2).toString("hex");

export const networkName = (driver: Driver): string => `${PREFIX}${driver}-${RUN_TAG}`;

/** Every IPv4 subnet some Docker network holds. */
async function subnetsInUse(): Promise<Set<string>> {
  const ids = (await docker(["network", "ls", "-q"])).split("\n").filter((id) => id !== "");
  if (ids.length === 0) return new Set();
  const out = await docker([
    "network",
    "inspect",
    "-f",
    "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
    ...ids,
  ]);
  return new Set(out.split(/\s+/).filter((subnet) => subnet !== ""));
}

/** A free /24 in 10.235.0.0/16 (private, unlikely to clash with anything real). */
async function freeSubnet(): Promise<string> {
  const used = await subnetsInUse();
  for (let attempt = 0; attempt < 200; attempt++) {
    const subnet = `10.235.${16 + Math.floor(Math.random() * 239)}.0/24`;
    if (!used.has(subnet)) return subnet;
  }
  throw new Error("no free /24 in 10.235.0.0/16 for a bench network");
}

/** Creates the bench network of `driver` for this run. */
export async function createNetwork(driver: Driver): Promise<string> {
  const name = networkName(driver);
  const args =
    driver === "switchyard"
      ? ["--driver", PLUGIN, "--ipam-driver", PLUGIN]
      : ["--driver", "bridge"];
  await docker(["network", "create", ...args, "--subnet", await freeSubnet(), name]);
  return name;
}

/**
 * Removes every container and network whose name starts with the prefix. Networks Docker
 * refuses to remove (see RUN_TAG) come back in `stuck`.
 */
export async function removeLeftovers(): Promise<{
  containers: number;
  networks: number;
  stuck: string[];
}> {
  const containers = (await docker(["ps", "-a", "--format", "{{.Names}}"]))
    .split("\n")
    .filter((name) => name.startsWith(PREFIX));
  await removeContainers(containers);
  const networks = (await docker(["network", "ls", "--format", "{{.Name}}"]))
    .split("\n")
    .filter((name) => name.startsWith(PREFIX));
  const stuck: string[] = [];
  for (const name of networks) {
    // A just-removed container's endpoint may linger a moment.
    for (let attempt = 1; ; attempt++) {
      const outcome = await dockerMayFail(["network", "rm", name]);
      if (outcome.exitCode === 0 || /not found|no such/i.test(outcome.stderr)) break;
      if (attempt >= 5) {
        stuck.push(name);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 400));
    }
  }
  return { containers: containers.length, networks: networks.length - stuck.length, stuck };
}

/** `docker rm -f` of many containers, in parallel batches. */
export async function removeContainers(names: readonly string[], batch = 25): Promise<void> {
  for (let i = 0; i < names.length; i += batch) {
    const slice = names.slice(i, i + batch);
    if (slice.length > 0) await dockerMayFail(["rm", "-f", ...slice]);
  }
}

/** The order of the two drivers in round `i`: A B, then B A, … so neither always goes first. */
export const orderFor = (i: number): readonly Driver[] =>
  i % 2 === 0 ? DRIVERS : [...DRIVERS].reverse();

/** Median wall time (ms) of `docker run --rm --network N busybox true`, pairs interleaved. */
export async function benchDockerRun(
  pairs: number,
  warmup = 2,
): Promise<{ medianMs: Record<Driver, number>; samples: Record<Driver, number[]> }> {
  const samples: Record<Driver, number[]> = { switchyard: [], bridge: [] };
  for (let i = 0; i < warmup + pairs; i++) {
    for (const driver of orderFor(i)) {
      const started = performance.now();
      await docker(["run", "--rm", "--network", networkName(driver), BUSYBOX, "true"]);
      const elapsed = performance.now() - started;
      if (i >= warmup) samples[driver].push(elapsed);
    }
  }
  return {
    medianMs: { switchyard: median(samples.switchyard), bridge: median(samples.bridge) },
    samples,
  };
}

/** One parallel start: wall time (ms) and whether every container got its own address. */
export interface ParallelResult {
  wallMs: number;
  addresses: number;
  distinct: number;
  removeMs: number;
}

/** Starts `count` containers at once on the driver's network, checks addresses, removes them. */
export async function benchParallelStart(driver: Driver, count: number): Promise<ParallelResult> {
  const network = networkName(driver);
  const names = Array.from({ length: count }, (_, i) => `${PREFIX}p-${driver}-${i}`);
  const started = performance.now();
  const outcomes = await Promise.all(
    names.map((name) =>
      dockerMayFail(["run", "-d", "--name", name, "--network", network, BUSYBOX, "sleep", "600"]),
    ),
  );
  const wallMs = performance.now() - started;
  try {
    const failed = outcomes.filter((outcome) => outcome.exitCode !== 0);
    if (failed.length > 0) {
      throw new Error(
        `${failed.length} of ${count} containers failed to start on ${driver}: ${failed[0]?.stderr}`,
      );
    }
    const format = `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`;
    const addresses = (await docker(["inspect", "-f", format, ...names]))
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "");
    const removeStarted = performance.now();
    await Promise.all(names.map((name) => dockerMayFail(["rm", "-f", name])));
    const removeMs = performance.now() - removeStarted;
    return { wallMs, addresses: addresses.length, distinct: new Set(addresses).size, removeMs };
  } finally {
    await removeContainers(names);
  }
}

interface IperfJson {
  error?: string;
  end?: { sum_received?: { bits_per_second?: number } };
}

/**
 * Container-to-container TCP throughput (bits/s) per driver: iperf3 -t SECONDS (after one
 * omitted second of slow start), rounds interleaved A B / B A.
 */
export async function benchThroughput(
  rounds: number,
  seconds: number,
): Promise<{ medianBps: Record<Driver, number>; samples: Record<Driver, number[]> }> {
  const servers: Record<Driver, string> = { switchyard: "", bridge: "" };
  for (const driver of DRIVERS) {
    const name = `${PREFIX}iperf-server-${driver}`;
    await dockerMayFail(["rm", "-f", name]);
    await docker([
      "run",
      "-d",
      "--name",
      name,
      "--network",
      networkName(driver),
      IPERF,
      "iperf3",
      "-s",
    ]);
    servers[driver] = await docker([
      "inspect",
      "-f",
      `{{(index .NetworkSettings.Networks "${networkName(driver)}").IPAddress}}`,
      name,
    ]);
  }
  const samples: Record<Driver, number[]> = { switchyard: [], bridge: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      for (const driver of orderFor(round)) {
        samples[driver].push(await iperfOnce(driver, servers[driver], seconds));
      }
    }
  } finally {
    await removeContainers(DRIVERS.map((driver) => `${PREFIX}iperf-server-${driver}`));
  }
  return {
    medianBps: { switchyard: median(samples.switchyard), bridge: median(samples.bridge) },
    samples,
  };
}

async function iperfOnce(driver: Driver, server: string, seconds: number): Promise<number> {
  let last = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const outcome = await dockerMayFail(
      [
        "run",
        "--rm",
        "--name",
        `${PREFIX}iperf-client-${driver}`,
        "--network",
        networkName(driver),
        IPERF,
        "iperf3",
        "-c",
        server,
        "-t",
        String(seconds),
        "-O",
        "1",
        "-J",
      ],
      (seconds + 60) * 1000,
    );
    let parsed: IperfJson | undefined;
    try {
      parsed = JSON.parse(outcome.stdout) as IperfJson;
    } catch {
      parsed = undefined;
    }
    const bps = parsed?.end?.sum_received?.bits_per_second;
    if (outcome.exitCode === 0 && typeof bps === "number" && bps > 0) return bps;
    last = parsed?.error ?? (outcome.stderr || outcome.stdout.slice(0, 300));
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error(`iperf3 to ${server} on ${driver} failed 5 times: ${last}`);
}

/**
 * Growth, the part that needs no Docker: the real plugin (`dist/main.js`, with the Node flags
 * of config.json) in a throwaway network namespace, driven through its socket as dockerd drives
 * it. Prints curves, not points:
 *
 * - resident memory idle, against a bare Node process with fastify, pino and execa loaded (the
 *   stack's floor), both started in the same run, interleaved;
 * - one CreateEndpoint (RequestAddress + CreateEndpoint, the veth included) and one publish
 *   (ProgramExternalConnectivity with a port: one firewall apply) at N existing endpoints;
 * - bytes the state store wrote for that one change; resident memory at N endpoints.
 *
 * Run as root after `make build`: node bench/standalone.ts [RUNS] [N,N,...]
 * (defaults: 3 runs of the memory comparison; endpoints 10,1000,10000).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { PluginClient, residentBytes } from "./lib/plugin.ts";
import { summarize } from "./lib/stats.ts";

const NODE = process.execPath;
const config = JSON.parse(await readFile(new URL("../config.json", import.meta.url), "utf8")) as {
  entrypoint: string[];
};
/** The flags the plugin runs with: everything between the binary and the script. */
const FLAGS = config.entrypoint.slice(1, -1);
const MAIN = new URL("../dist/main.js", import.meta.url).pathname;
const FLOOR =
  'await Promise.all([import("fastify"), import("pino"), import("execa")]); setInterval(() => {}, 1 << 30);';

const runs = Number(process.argv[2] ?? 3);
const counts = (process.argv[3] ?? "10,1000,10000").split(",").map(Number);

if (process.getuid?.() !== 0)
  throw new Error("bench/standalone.ts needs root (network namespaces)");

const namespace = `sybench-${randomBytes(3).toString("hex")}`;
execFileSync("ip", ["netns", "add", namespace]);
execFileSync("ip", ["-n", namespace, "link", "set", "lo", "up"]);
const children: ChildProcess[] = [];

/** A process inside the namespace; its own PID (not `ip netns exec`'s) once it runs. */
function start(argv: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn("ip", ["netns", "exec", namespace, ...argv], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "inherit"],
    cwd: new URL("..", import.meta.url).pathname,
  });
  children.push(child);
  return child;
}

/** `ip netns exec` execs the command, so the child's PID is the process's own. */
const pidOf = (child: ChildProcess): number => child.pid ?? Number.NaN;

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await Promise.race([exited, sleep(5000)]);
  if (child.exitCode === null) child.kill("SIGKILL");
}

async function startPlugin(): Promise<{ child: ChildProcess; client: PluginClient; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "sybench-"));
  const socket = join(dir, "switchyard.sock");
  const child = start([NODE, ...FLAGS, MAIN], {
    SOCKET_PATH: socket,
    STATE_DIR: join(dir, "state"),
    LOG_LEVEL: "warn",
  });
  const client = new PluginClient(socket, 1);
  for (let i = 0; ; i++) {
    const answer = await client.call("Plugin.Activate").catch(() => undefined);
    if (answer?.status === 200) break;
    if (i > 200) throw new Error("the plugin did not answer on its socket within 20 s");
    await sleep(100);
  }
  return { child, client, dir };
}

const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
const ms = (value: number): string => value.toFixed(2);
const line = (label: string, values: number[], format: (n: number) => string): string => {
  const s = summarize(values);
  return `${label.padEnd(48)} ${format(Math.min(...values))} / ${format(s.p50)} / ${format(s.max)}`;
};

async function memoryComparison(): Promise<void> {
  const plugin: number[] = [];
  const floor: number[] = [];
  for (let run = 0; run < runs; run++) {
    // Interleaved (A B, B A, …), each measured after it settled.
    const order = run % 2 === 0 ? ["plugin", "floor"] : ["floor", "plugin"];
    for (const which of order) {
      if (which === "plugin") {
        const { child, client, dir } = await startPlugin();
        await sleep(3000);
        plugin.push(await residentBytes(pidOf(child)));
        client.close();
        await stop(child);
        await rm(dir, { recursive: true, force: true });
      } else {
        const child = start([NODE, ...FLAGS, "--input-type=module", "-e", FLOOR]);
        await sleep(3000);
        floor.push(await residentBytes(pidOf(child)));
        await stop(child);
      }
    }
  }
  console.log(`\nresident memory, MB (min / median / max of ${runs}; flags ${FLAGS.join(" ")})`);
  console.log(line("plugin idle (dist/main.js, no networks)", plugin, mb));
  console.log(line("floor: node + fastify + pino + execa", floor, mb));
  const over = plugin.map((value, i) => value - (floor[i] ?? Number.NaN));
  console.log(line("plugin − floor (same run)", over, mb));
}

/** A Linux bridge takes at most 1,024 ports: 1,000 endpoints per network, then the next one. */
const PER_NETWORK = 1000;
const poolOf = (network: number): string => `10.${200 + network}.0.0/16`;
const poolIdOf = (network: number): string => `LocalDefault/${poolOf(network)}`;
const networkIdOf = (network: number): string =>
  `${`5eed${String(network).padStart(2, "0")}`.padEnd(62, "0")}01`;
const hex = (bytes: number): string => randomBytes(bytes).toString("hex");

async function endpointCurve(): Promise<void> {
  const { child, client, dir } = await startPlugin();
  const journal = join(dir, "state", "state.journal");
  const size = async (): Promise<number> => (await stat(journal).catch(() => ({ size: 0 }))).size;
  const results: string[] = [];
  try {
    let networks = 0;
    const addNetwork = async (): Promise<void> => {
      const pool = poolOf(networks);
      await client.ok("IpamDriver.RequestPool", {
        AddressSpace: "LocalDefault",
        Pool: pool,
        SubPool: "",
        Options: {},
        V6: false,
      });
      const gateway = await client.ok("IpamDriver.RequestAddress", {
        PoolID: poolIdOf(networks),
        Address: "",
        Options: { RequestAddressType: "com.docker.network.gateway" },
      });
      await client.ok("NetworkDriver.CreateNetwork", {
        NetworkID: networkIdOf(networks),
        Options: { "com.docker.network.enable_ipv6": false, "com.docker.network.generic": {} },
        IPv4Data: [{ AddressSpace: "LocalDefault", Gateway: gateway.Address, Pool: pool }],
        IPv6Data: [],
      });
      networks++;
    };
    const options = {
      "com.docker.network.endpoint.exposedports": [],
      "com.docker.network.portmap": [],
    };
    let existing = 0;
    const create = async (): Promise<{ id: string; network: string; ms: number }> => {
      if (existing >= networks * PER_NETWORK) await addNetwork();
      const id = hex(32);
      const network = networks - 1;
      const started = performance.now();
      const ra = await client.ok("IpamDriver.RequestAddress", {
        PoolID: poolIdOf(network),
        Address: "",
        Options: null,
      });
      await client.ok("NetworkDriver.CreateEndpoint", {
        NetworkID: networkIdOf(network),
        EndpointID: id,
        Interface: { Address: ra.Address, AddressIPv6: "", MacAddress: "" },
        Options: options,
      });
      existing++;
      return { id, network: networkIdOf(network), ms: performance.now() - started };
    };
    let port = 20000;
    console.log(`\nat N endpoints (${PER_NETWORK} per network): min / median / max of 20 samples`);
    for (const count of counts) {
      while (existing < count) await create();
      const createMs: number[] = [];
      const publishMs: number[] = [];
      const bytes: number[] = [];
      for (let i = 0; i < 20; i++) {
        const before = await size();
        const made = await create();
        createMs.push(made.ms);
        bytes.push((await size()) - before);
        const ids = { NetworkID: made.network, EndpointID: made.id };
        const started = performance.now();
        await client.ok("NetworkDriver.ProgramExternalConnectivity", {
          ...ids,
          Options: {
            "com.docker.network.portmap": [
              { Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: port, HostPortEnd: port },
            ],
          },
        });
        publishMs.push(performance.now() - started);
        port++;
      }
      const rss = await residentBytes(pidOf(child));
      results.push(
        `N=${String(count).padEnd(6)} ${line("RequestAddress+CreateEndpoint, ms", createMs, ms)}`,
        `N=${String(count).padEnd(6)} ${line("publish one port (firewall apply), ms", publishMs, ms)}`,
        `N=${String(count).padEnd(6)} ${line("journal bytes written per endpoint", bytes, String)}`,
        `N=${String(count).padEnd(6)} ${"plugin RSS, MB".padEnd(48)} ${mb(rss)}`,
      );
      console.log(results.slice(-4).join("\n"));
    }
  } finally {
    client.close();
    await stop(child);
    await rm(dir, { recursive: true, force: true });
  }
}

try {
  await memoryComparison();
  await endpointCurve();
} finally {
  for (const child of children) await stop(child);
  execFileSync("ip", ["netns", "del", namespace]);
}

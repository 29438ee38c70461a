/**
 * Multi-host without risk to the host: floods a DNS resolver address with a bounded number of
 * queries while timing a second stream of requests, to show what the flood costs the event loop
 * those requests share (the plugin answers dockerd on the loop its resolver runs on). Not a
 * timed test: it prints what it measured, before, during and after the flood.
 *
 *   node bench/dns-flood.ts
 *     Self-contained, no root, no Docker: a child process runs Switchyard's DnsServer with the
 *     real resolver (answerQuestion, the client index over --endpoints endpoints) on
 *     127.0.0.53, and a fastify app on 127.0.0.1 whose GET /ping is timed.
 *
 *   node bench/dns-flood.ts --target 169.254.53.53 \
 *       --plugin-socket /run/docker/plugins/ID/switchyard.sock [--pid PID]
 *     Against the real plugin: queries to its resolver (DNS_ADDRESS), Plugin.Activate timed on
 *     its socket as dockerd sends it (ID: docker plugin inspect -f '{{.Id}}' switchyard:latest;
 *     PID, for its CPU: ctr -a /var/run/docker/containerd/containerd.sock -n plugins.moby
 *     task ls).
 *
 *   node bench/dns-flood.ts --target 169.254.53.53 --time-cmd "docker network ls"
 *     Times a command instead, one run after another (each from start to exit).
 *
 * From the host, the flood comes in on lo and meets the resolver's own limits only. Run it in a
 * container's network namespace (ip netns exec NS …, or nsenter -n -t PID …) to go through the
 * packet filter's limit per source too, as a misbehaving container would.
 *
 * Options:
 *   --target ADDR     where the flood goes, and nowhere else (default 127.0.0.53, self-contained)
 *   --port P          its port (53)
 *   --rate Q          queries per second (10000; at most 50000)
 *   --seconds S       how long the flood lasts (10; at most 60)
 *   --name NAME       the name asked, type A (web1, which the self-contained resolver knows;
 *                     another name is REFUSED)
 *   --from A,B,...    source addresses, one socket each, queries spread over them (default:
 *                     one socket, the kernel's choice); more sources reach the global limit
 *   --idle S          seconds timed before and after the flood (3)
 *   --interval MS     pause between timed requests (10)
 *   --endpoints N     self-contained: endpoints in the resolver's state (1000)
 *   --scan            self-contained: look the client up with a scan of every endpoint per
 *                     query (networksOfClient, as before the index) instead of the index
 *   --no-limits       self-contained: the resolver without its rate limits, to compare
 *   --json            one JSON line instead of the table
 */
import { execFileSync, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { tryParseAddress } from "../src/ipam/prefix.ts";
import { PluginClient } from "./lib/plugin.ts";
import { round, summarize } from "./lib/stats.ts";

const MAX_RATE = 50_000;
const MAX_SECONDS = 60;
const SELF_TARGET = "127.0.0.53";

/** What the flood worker is told, and what it reports. */
interface FloodJob {
  target: string;
  port: number;
  rate: number;
  seconds: number;
  name: string;
  from: string[];
}
interface FloodReport {
  sent: number;
  seconds: number;
  replies: Record<string, number>;
}

const RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** An A query for `name` with RD set, the id left for the sender to fill in. */
function queryFor(name: string): Buffer {
  const labels = name.split(".").flatMap((label) => [label.length, ...Buffer.from(label)]);
  return Buffer.from([0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

/** The flood, in a worker thread so it never shares the timing loop's event loop. */
async function flood(job: FloodJob): Promise<FloodReport> {
  const v6 = job.target.includes(":");
  const sockets = await Promise.all(
    (job.from.length === 0 ? [undefined] : job.from).map(
      (from) =>
        new Promise<ReturnType<typeof createSocket>>((resolve) => {
          const socket = createSocket(v6 ? "udp6" : "udp4");
          socket.bind(0, from, () => resolve(socket));
        }),
    ),
  );
  const replies: Record<string, number> = {};
  for (const socket of sockets) {
    socket.on("message", (reply) => {
      const rcode = RCODES[(reply[3] ?? 0) & 0xf] ?? String((reply[3] ?? 0) & 0xf);
      replies[rcode] = (replies[rcode] ?? 0) + 1;
    });
    socket.on("error", () => undefined); // ICMP unreachable and the like: counted as no reply
  }
  const query = queryFor(job.name);
  const total = Math.round(job.rate * job.seconds);
  const started = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - started) * job.rate) / 1000));
    // After a stall, catch up at most 1,000 at once: the rate, not a burst, is what is asked.
    for (let n = 0; sent < due && n < 1_000; n++, sent++) {
      query.writeUInt16BE(sent & 0xffff, 0);
      sockets[sent % sockets.length]?.send(query, job.port, job.target);
    }
    await sleep(1);
  }
  const seconds = (performance.now() - started) / 1000;
  await sleep(500); // the last replies
  for (const socket of sockets) socket.close();
  return { sent, seconds, replies };
}

/** CPU seconds a process used so far (user + system), or undefined when it cannot be read. */
function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** One timed request, by the chosen means; resolves when it is answered. */
type Timed = () => Promise<void>;

function httpTimed(url: string): Timed {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return () =>
    new Promise((resolve, reject) => {
      const req = request(url, { agent, timeout: 30_000 }, (res) => {
        res.resume();
        res.on("end", () => resolve());
      });
      req.on("error", reject);
      req.end();
    });
}

function commandTimed(command: string): Timed {
  return () =>
    new Promise((resolve, reject) => {
      const child = spawn("sh", ["-c", command], { stdio: "ignore" });
      child.on("error", reject);
      child.on("exit", () => resolve());
    });
}

/** The self-contained target: a child process holding both the resolver and an HTTP app. */
async function serve(endpoints: number, scan: boolean, limits: boolean): Promise<void> {
  const [{ fastify }, { pino }, { DnsServer }, { NameTable }, resolver, model] = await Promise.all([
    import("fastify"),
    import("pino"),
    import("../src/dns/server.ts"),
    import("../src/discovery/name-table.ts"),
    import("../src/discovery/resolver.ts"),
    import("../src/state/model.ts"),
  ]);
  const state = model.emptyState();
  state.networks.mesh = {
    id: "mesh",
    bridge: "sy-mesh",
    bridgeOwned: true,
    ipv4: [{ pool: "10.60.0.0/16", gateway: "10.60.0.1/16" }],
    ipv6: [],
    internal: false,
    enableIpv6: false,
    icc: true,
    masquerade: true,
    options: {},
    vxlanId: 4242,
  };
  // The flood's sources are endpoints of the network (served clients), asked for last.
  for (let i = 0; i < endpoints; i++) {
    const address = `10.60.${Math.floor(i / 250)}.${(i % 250) + 2}/16`;
    state.endpoints[`e${i}`] = {
      id: `e${i}`,
      networkId: "mesh",
      hostVeth: `vsy${i}`,
      peerVeth: "eth0",
      mac: "02:42:00:00:00:00",
      address,
      ports: [],
      sandbox: `/var/run/docker/netns/${i}`,
    };
  }
  for (let i = 0; i < 256; i++) {
    state.endpoints[`lo${i}`] = {
      id: `lo${i}`,
      networkId: "mesh",
      hostVeth: `vlo${i}`,
      peerVeth: "eth0",
      mac: "02:42:00:00:00:00",
      address: `127.0.0.${i}/8`,
      ports: [],
    };
  }
  const table = new NameTable();
  table.replace(4242, [{ hostId: "other", endpointId: "x", names: ["web1"], ipv4: "10.60.9.9" }]);
  const indexed = resolver.memoiseClientNetworks(
    () => state,
    () => 1,
  );
  const networksOf = scan ? (client: string) => resolver.networksOfClient(state, client) : indexed;
  const unlimited = {
    perSourceRate: 1e9,
    perSourceBurst: 1e9,
    globalRate: 1e9,
    globalBurst: 1e9,
    maxPendingUdp: 1e9,
  };
  const dns = new DnsServer({
    address: SELF_TARGET,
    port: 0,
    logger: pino({ level: "warn" }),
    resolve: (question, client) =>
      resolver.answerQuestion(question, networksOf(client.address), table),
    ...(limits ? {} : { limits: unlimited }),
  });
  await dns.start();
  const app = fastify();
  app.get("/ping", async () => ({}));
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  const httpPort = typeof address === "object" && address !== null ? address.port : 0;
  process.stdout.write(`${JSON.stringify({ dnsPort: dns.port, httpPort, pid: process.pid })}\n`);
}

/** Starts the self-contained target and waits for the ports it reports. */
async function startSelf(
  endpoints: number,
  scan: boolean,
  limits: boolean,
): Promise<{ dnsPort: number; httpPort: number; pid: number; stop: () => void }> {
  const argv = [new URL(import.meta.url).pathname, "--serve", `--endpoints=${endpoints}`];
  if (scan) argv.push("--scan");
  if (!limits) argv.push("--no-limits");
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    let text = "";
    child.stdout.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8");
      if (text.includes("\n")) resolve(text.split("\n")[0] ?? "");
    });
    child.on("exit", (code) => reject(new Error(`the target exited with ${code}`)));
  });
  const ports = JSON.parse(line) as { dnsPort: number; httpPort: number; pid: number };
  return { ...ports, stop: () => child.kill("SIGTERM") };
}

/** Refuses targets a flood must never go to: names, multicast, broadcast, unspecified. */
function checkTarget(target: string): void {
  const address = tryParseAddress(target);
  if (address === undefined) throw new Error(`--target "${target}" is not an IP address`);
  if (address.v6) {
    if (address.value === 0n || address.value >> 120n === 0xffn)
      throw new Error(`--target ${target}: not a unicast address`);
  } else if (address.value === 0n || address.value >= 0xe0000000n) {
    throw new Error(`--target ${target}: not a unicast address`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: "boolean", default: false },
      target: { type: "string" },
      port: { type: "string", default: "53" },
      rate: { type: "string", default: "10000" },
      seconds: { type: "string", default: "10" },
      name: { type: "string", default: "web1" },
      from: { type: "string", default: "" },
      idle: { type: "string", default: "3" },
      interval: { type: "string", default: "10" },
      endpoints: { type: "string", default: "1000" },
      scan: { type: "boolean", default: false },
      "no-limits": { type: "boolean", default: false },
      "plugin-socket": { type: "string" },
      "time-cmd": { type: "string" },
      pid: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const endpoints = Number(values.endpoints);
  if (values.serve) {
    await serve(endpoints, values.scan, !values["no-limits"]);
    return;
  }
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  if (!(rate > 0 && rate <= MAX_RATE)) throw new Error(`--rate must be 1..${MAX_RATE}`);
  if (!(seconds > 0 && seconds <= MAX_SECONDS))
    throw new Error(`--seconds must be 1..${MAX_SECONDS}`);
  const from = values.from === "" ? [] : values.from.split(",");
  for (const address of from) checkTarget(address);

  let target = values.target;
  let port = Number(values.port);
  let timed: Timed;
  let pid = values.pid === undefined ? undefined : Number(values.pid);
  let stop = (): void => undefined;
  let timing: string;
  if (target === undefined) {
    const self = await startSelf(endpoints, values.scan, !values["no-limits"]);
    target = SELF_TARGET;
    port = self.dnsPort;
    pid = self.pid;
    stop = self.stop;
    timed = httpTimed(`http://127.0.0.1:${self.httpPort}/ping`);
    timing = `GET /ping (fastify, same process; ${endpoints} endpoints, ${values.scan ? "scan" : "index"}, limits ${values["no-limits"] ? "off" : "on"})`;
  } else if (values["plugin-socket"] !== undefined) {
    const client = new PluginClient(values["plugin-socket"], 1);
    timed = async () => {
      await client.ok("Plugin.Activate");
    };
    timing = `Plugin.Activate on ${values["plugin-socket"]}`;
  } else if (values["time-cmd"] !== undefined) {
    timed = commandTimed(values["time-cmd"]);
    timing = `sh -c ${JSON.stringify(values["time-cmd"])}`;
  } else {
    throw new Error("with --target, say what to time: --plugin-socket PATH or --time-cmd CMD");
  }
  checkTarget(target);

  // Untimed first requests: the first few pay for connection set-up and compilation.
  for (let i = 0; i < 20; i++) await timed();
  const job: FloodJob = { target, port, rate, seconds, name: values.name, from };
  const idle = Number(values.idle) * 1000;
  const interval = Number(values.interval);
  const samples: Record<string, number[]> = { before: [], flood: [], after: [] };
  const cpu: Record<string, number | undefined> = {};
  let phase: keyof typeof samples = "before";
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const started = performance.now();
      await timed();
      const took = performance.now() - started;
      samples[phase]?.push(took);
      await sleep(Math.max(0, interval - took));
    }
  })();

  const phaseCpu = async (name: string, run: () => Promise<unknown>): Promise<unknown> => {
    const startCpu = cpuSeconds(pid);
    const started = performance.now();
    const result = await run();
    const endCpu = cpuSeconds(pid);
    cpu[name] =
      startCpu === undefined || endCpu === undefined
        ? undefined
        : (100 * (endCpu - startCpu)) / ((performance.now() - started) / 1000);
    return result;
  };

  await phaseCpu("before", () => sleep(idle));
  phase = "flood";
  const report = (await phaseCpu(
    "flood",
    () =>
      new Promise<FloodReport>((resolve, reject) => {
        const worker = new Worker(new URL(import.meta.url), { workerData: job });
        worker.once("message", resolve);
        worker.once("error", reject);
      }),
  )) as FloodReport;
  phase = "after";
  await phaseCpu("after", () => sleep(idle));
  sampling = false;
  await sampler;
  stop();

  const rows = (["before", "flood", "after"] as const).map((name) => {
    const summary = summarize(samples[name] ?? []);
    return {
      phase: name,
      requests: summary.n,
      p50ms: round(summary.p50, 3),
      p99ms: round(summary.p99, 3),
      maxms: round(summary.max, 3),
      targetCpuPercent: cpu[name] === undefined ? null : round(cpu[name] ?? 0, 1),
    };
  });
  const answered = Object.values(report.replies).reduce((sum, n) => sum + n, 0);
  const result = {
    timing,
    flood: {
      target: `${target}:${port}`,
      name: values.name,
      sources: Math.max(1, from.length),
      sent: report.sent,
      seconds: round(report.seconds, 2),
      answered,
      replies: report.replies,
      unanswered: report.sent - answered,
    },
    phases: rows,
  };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  process.stdout.write(`timed: ${timing}, every ${interval} ms\n`);
  process.stdout.write(
    `flood: ${report.sent} A queries for ${values.name} to ${target}:${port} from ${result.flood.sources} source(s) in ${result.flood.seconds} s; answered ${answered} ${JSON.stringify(report.replies)}, unanswered ${result.flood.unanswered}\n`,
  );
  process.stdout.write("phase   requests   p50 ms   p99 ms   max ms   target CPU %\n");
  for (const row of rows) {
    process.stdout.write(
      `${row.phase.padEnd(7)} ${String(row.requests).padStart(8)} ${String(row.p50ms).padStart(8)} ${String(row.p99ms).padStart(8)} ${String(row.maxms).padStart(8)} ${String(row.targetCpuPercent ?? "-").padStart(14)}\n`,
    );
  }
}

if (isMainThread) {
  await main();
} else {
  parentPort?.postMessage(await flood(workerData as FloodJob));
}

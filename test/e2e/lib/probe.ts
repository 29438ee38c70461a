/**
 * Small TCP/UDP clients and servers for e2e tests, run by this Node binary on the host, inside a
 * network namespace the test made, or inside a container's network namespace (through
 * `nsenter`). The test image's busybox has no UDP `nc`, so UDP always goes through these.
 * Aim them only at addresses on this machine.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { readFile } from "node:fs/promises";
import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { DOCKERD_LOG } from "./config.ts";
import { docker, dockerMayFail, httpGet } from "./docker.ts";
import { host } from "./host.ts";

/** Where a probe runs: the host itself, a named network namespace, or a container's. */
export type Place =
  | { kind: "host" }
  | { kind: "netns"; netns: string }
  | { kind: "container"; container: string };

export const ON_HOST: Place = { kind: "host" };

const PROBE_TIMEOUT_MS = 2_000;

// Scripts for `node -e SCRIPT ARGS…` (CommonJS); process.argv[1] is the first ARG.
const TCP_CLIENT = `
const net = require("node:net");
const [host, port, payload, timeout] = process.argv.slice(1);
const chunks = [];
let connected = false;
const finish = () => { process.stdout.write(Buffer.concat(chunks)); process.exit(connected ? 0 : 1); };
setTimeout(finish, Number(timeout)).unref();
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
s.on("connect", () => { connected = true; s.end(payload); });
s.on("data", (d) => chunks.push(d));
s.on("error", () => {});
s.on("close", finish);
`;

const UDP_CLIENT = `
const dgram = require("node:dgram");
const [host, port, payload, timeout] = process.argv.slice(1);
const s = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
setTimeout(() => process.exit(1), Number(timeout)).unref();
s.on("message", (m) => { process.stdout.write(m); process.exit(0); });
s.on("error", () => process.exit(1));
s.send(payload, Number(port), host);
`;

/** Answers every TCP connection with the peer's address and a newline, then closes. */
const TCP_WHOAMI_SERVER = `
const net = require("node:net");
const [port, address] = process.argv.slice(1);
const s = net.createServer((c) => {
  c.on("error", () => {});
  process.stdout.write("peer " + c.remoteAddress + "\\n");
  c.end(c.remoteAddress + "\\n");
});
s.listen(Number(port), address, () => process.stdout.write("ready\\n"));
`;

/** Answers every UDP datagram with TAG:DATAGRAM. */
const UDP_ECHO_SERVER = `
const dgram = require("node:dgram");
const [port, tag, address] = process.argv.slice(1);
const s = dgram.createSocket(address.includes(":") ? "udp6" : "udp4");
s.on("message", (m, r) => s.send(tag + ":" + m, r.port, r.address));
s.bind(Number(port), address, () => process.stdout.write("ready\\n"));
`;

async function containerPid(container: string): Promise<number> {
  const pid = Number(await docker(["inspect", "--format", "{{.State.Pid}}", container]));
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`container ${container} is not running`);
  return pid;
}

/** The argv that runs `node -e script args…` at `place`. */
async function nodeArgv(place: Place, script: string, args: string[]): Promise<string[]> {
  const node = [process.execPath, "-e", script, ...args];
  switch (place.kind) {
    case "host":
      return node;
    case "netns":
      return ["ip", "netns", "exec", place.netns, ...node];
    case "container":
      return ["nsenter", `--net=/proc/${await containerPid(place.container)}/ns/net`, ...node];
  }
}

async function runProbe(place: Place, script: string, args: string[]): Promise<string | undefined> {
  const [file = "", ...rest] = await nodeArgv(place, script, args);
  const result = await execa(file, rest, { reject: false, timeout: 15_000 });
  if (result.exitCode !== 0) return undefined;
  return String(result.stdout ?? "");
}

function tcpRequestHere(
  address: string,
  port: number,
  payload: string,
  timeoutMs: number,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let connected = false;
    let settled = false;
    const socket = connect({ host: address, port, allowHalfOpen: true });
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(connected ? Buffer.concat(chunks).toString() : undefined);
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on("connect", () => {
      connected = true;
      socket.end(payload);
    });
    socket.on("data", (data: Buffer) => chunks.push(data));
    socket.on("error", () => undefined);
    socket.on("close", finish);
  });
}

function udpRequestHere(
  address: string,
  port: number,
  payload: string,
  timeoutMs: number,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket(address.includes(":") ? "udp6" : "udp4");
    const finish = (answer: string | undefined) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.on("message", (message) => finish(message.toString()));
    socket.on("error", () => finish(undefined));
    socket.send(payload, port, address);
  });
}

/**
 * Connects from `place` to `address:port`, sends `payload`, half-closes and returns everything
 * received; undefined when the connection failed (refused, dropped, unreachable).
 * A connection that succeeded but got no reply gives "".
 */
export function tcpRequest(
  place: Place,
  address: string,
  port: number,
  payload = "",
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<string | undefined> {
  if (place.kind === "host") return tcpRequestHere(address, port, payload, timeoutMs);
  return runProbe(place, TCP_CLIENT, [address, String(port), payload, String(timeoutMs)]);
}

/** An HTTP/1.0 `GET path` from `place`; the raw response or undefined when nothing answered. */
export async function httpGetFrom(
  place: Place,
  address: string,
  port: number,
  path = "/",
): Promise<string | undefined> {
  const response = await tcpRequest(place, address, port, `GET ${path} HTTP/1.0\r\n\r\n`);
  return response === "" ? undefined : response;
}

/** Sends one UDP datagram from `place` and returns the first reply, or undefined. */
export function udpRequest(
  place: Place,
  address: string,
  port: number,
  payload: string,
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<string | undefined> {
  if (place.kind === "host") return udpRequestHere(address, port, payload, timeoutMs);
  return runProbe(place, UDP_CLIENT, [address, String(port), payload, String(timeoutMs)]);
}

/** A server process a test started; `close()` ends it (safe to call twice). */
export interface BackgroundServer {
  /** What the server printed so far (one "peer ADDRESS" line per TCP connection). */
  output(): string;
  close(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

async function startServer(
  place: Place,
  script: string,
  args: string[],
): Promise<BackgroundServer> {
  const [file = "", ...rest] = await nodeArgv(place, script, args);
  const child = spawn(file, rest, { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (data: Buffer) => {
    stdout += data.toString();
  });
  child.stderr?.on("data", (data: Buffer) => {
    stderr += data.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      await Promise.race([exited, sleep(3_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    running.delete(child);
  };
  const deadline = Date.now() + 10_000;
  while (!stdout.includes("ready\n")) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await close();
      throw new Error(`server ${rest.join(" ").slice(0, 80)}… did not start: ${stderr.trim()}`);
    }
    await sleep(20);
  }
  return { output: () => stdout, close };
}

/** Starts, at `place`, a TCP server on `port` that answers each connection with the peer address. */
export function startWhoamiServer(
  place: Place,
  port: number,
  address = "0.0.0.0",
): Promise<BackgroundServer> {
  return startServer(place, TCP_WHOAMI_SERVER, [String(port), address]);
}

/** Starts, at `place`, a UDP server on `port` that answers each datagram with `TAG:DATAGRAM`. */
export function startUdpEchoServer(
  place: Place,
  port: number,
  tag: string,
  address = "0.0.0.0",
): Promise<BackgroundServer> {
  return startServer(place, UDP_ECHO_SERVER, [String(port), tag, address]);
}

/**
 * The host's primary IPv4 address: the one on the interface of its default route (eth0 on
 * these machines). Containers elsewhere reach published ports through it.
 */
export async function hostPrimaryAddress(): Promise<string> {
  const routes = JSON.parse(
    (await host(["ip", "-4", "-j", "route", "show", "default"])) || "[]",
  ) as {
    dev?: string;
  }[];
  const dev = routes[0]?.dev ?? "eth0";
  const out = await host(["ip", "-4", "-o", "addr", "show", "dev", dev]);
  const match = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out);
  if (!match?.[1]) throw new Error(`no IPv4 address on ${dev}: ${out}`);
  return match[1];
}

/** The endpoint ID dockerd gave `container` on `network` ("" when not attached). */
export function containerEndpointId(container: string, network: string): Promise<string> {
  return docker([
    "inspect",
    "--format",
    `{{with index .NetworkSettings.Networks ${JSON.stringify(network)}}}{{.EndpointID}}{{end}}`,
    container,
  ]);
}

/**
 * The host port published for `containerPort/proto` of `container` on `network`. Docker's own
 * record first (`docker port`, which it keeps only for its built-in drivers), then Switchyard's
 * "port published" log line in dockerd's log, matched by the endpoint's ID. Polls a little,
 * as the log line may trail `docker run`.
 */
export async function publishedHostPort(
  container: string,
  network: string,
  containerPort: number,
  proto: "tcp" | "udp" = "tcp",
): Promise<number | undefined> {
  const shown = await dockerMayFail(["port", container, `${containerPort}/${proto}`]);
  const fromDocker = /:(\d+)\s*$/m.exec(shown.stdout)?.[1];
  if (shown.exitCode === 0 && fromDocker) return Number(fromDocker);

  const endpoint = (await containerEndpointId(container, network)).slice(0, 12);
  if (endpoint === "") return undefined;
  const target = await docker([
    "inspect",
    "--format",
    `{{with index .NetworkSettings.Networks ${JSON.stringify(network)}}}{{.IPAddress}}{{end}}`,
    container,
  ]);
  const deadline = Date.now() + 3_000;
  for (;;) {
    const log = await readFile(DOCKERD_LOG, "utf8").catch(() => "");
    let found: number | undefined;
    for (const line of log.split("\n")) {
      if (!line.includes("port published") || !line.includes(endpoint)) continue;
      // dockerd quotes the plugin's JSON line: \"published\":\"0.0.0.0:49153/tcp\"
      const unquoted = line.replace(/\\"/g, '"');
      const published = /"published":"[^"]*:(\d+)\/(tcp|udp)"/.exec(unquoted);
      const targetPort = /"target":\{"address":"([^"]*)","port":(\d+)\}/.exec(unquoted);
      if (!published || published[2] !== proto) continue;
      if (targetPort && (targetPort[1] !== target || Number(targetPort[2]) !== containerPort))
        continue;
      found = Number(published[1]);
    }
    if (found !== undefined || Date.now() > deadline) return found;
    await sleep(200);
  }
}

/**
 * Waits until the busybox httpd in `container` (started with `httpServerCommand(token, port)`)
 * serves `token` on its own loopback. `docker run -d` returns before the server listens, so a
 * check made at once could fail for that alone — or a negative check pass for that alone.
 */
export async function waitForHttpd(container: string, token: string, port = 80): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const response = await httpGet(container, "127.0.0.1", port);
    if (response?.includes(token)) return;
    if (Date.now() > deadline) {
      throw new Error(`httpd in ${container} does not serve its page on port ${port}`);
    }
    await sleep(100);
  }
}

/** Helpers that drive the real Docker daemon for e2e tests. */

import { randomBytes } from "node:crypto";
import { execa } from "execa";
import { ipamDriver, isBuiltInDriver, networkDriver, TEST_IMAGE } from "./config.ts";

/**
 * Whichever `docker` client comes first on PATH, negotiating the API version with the daemon
 * (Docker 29 refuses clients pinned below 1.44). `make` puts the client of the Docker release
 * under test first (see scripts/docker-release.sh): a 28 client against a 20.10 daemon cannot
 * send every flag (`--network X --mac-address` needs API 1.44).
 */
export const DOCKER_CLIENT = "docker";
const DOCKER_TIMEOUT_MS = 120_000;

/** How a command ended. */
export interface CommandOutcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Options for one docker call. */
export interface DockerOptions {
  /** Text written to the command's standard input. */
  input?: string;
  /** Give up after this long (default two minutes). */
  timeoutMs?: number;
}

/** Runs `docker ARGS…` and reports how it ended without throwing on a non-zero exit. */
export async function dockerMayFail(
  args: readonly string[],
  options: DockerOptions = {},
): Promise<CommandOutcome> {
  const result = await execa(DOCKER_CLIENT, args, {
    input: options.input,
    reject: false,
    timeout: options.timeoutMs ?? DOCKER_TIMEOUT_MS,
  });
  if (result.exitCode === undefined) {
    throw new Error(
      `cannot run docker ${args.join(" ")}: ${result.shortMessage ?? result.message}`,
    );
  }
  return {
    exitCode: result.exitCode,
    stdout: String(result.stdout ?? "").trim(),
    stderr: String(result.stderr ?? "").trim(),
  };
}

/** Runs `docker ARGS…` and returns its trimmed stdout; throws with argv and stderr on failure. */
export async function docker(
  args: readonly string[],
  options: DockerOptions = {},
): Promise<string> {
  const outcome = await dockerMayFail(args, options);
  if (outcome.exitCode !== 0) {
    throw new Error(
      `docker ${args.join(" ")} failed (exit ${outcome.exitCode}): ${outcome.stderr || outcome.stdout}`,
    );
  }
  return outcome.stdout;
}

/** Throws unless the tests run as root (they make bridges and read host links). */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "e2e tests need root: they create bridges and talk to dockerd; run them as root",
    );
  }
}

/** Throws unless a docker client is installed, dockerd answers and the test image exists. */
export async function requireDocker(): Promise<void> {
  const client = await execa(DOCKER_CLIENT, ["--version"], { reject: false });
  if (client.exitCode !== 0) {
    throw new Error(
      "e2e tests need a docker client on PATH: run `make docker` (installs docker.io and starts dockerd)",
    );
  }
  const info = await dockerMayFail(["info", "--format", "{{.ServerVersion}}"], {
    timeoutMs: 15_000,
  });
  if (info.exitCode !== 0) {
    throw new Error(
      `e2e tests need a running dockerd: run \`make enable\` or scripts/ensure-docker.sh (${info.stderr})`,
    );
  }
  const image = await dockerMayFail(["image", "inspect", "--format", "{{.Id}}", TEST_IMAGE]);
  if (image.exitCode !== 0) {
    throw new Error(`e2e tests need the image ${TEST_IMAGE}: run scripts/test-image.sh`);
  }
}

/** The daemon's major version (20, 26, 28, 29, …), for what differs between releases. */
export async function dockerMajor(): Promise<number> {
  return (await dockerRelease())[0];
}

/** The daemon's release as [major, minor] (29.7.2 → [29, 7]). */
export async function dockerRelease(): Promise<[number, number]> {
  const version = await docker(["version", "--format", "{{.Server.Version}}"]);
  const [major, minor] = version.split(".").map(Number);
  if (
    !Number.isInteger(major) ||
    !Number.isInteger(minor) ||
    major === undefined ||
    minor === undefined
  )
    throw new Error(`cannot read the daemon's version from "${version}"`);
  return [major, minor];
}

/** Throws unless the managed plugin `name` is installed and enabled. */
export async function requirePlugin(name = "switchyard:latest"): Promise<void> {
  const outcome = await dockerMayFail(["plugin", "inspect", "--format", "{{.Enabled}}", name]);
  if (outcome.exitCode !== 0) {
    throw new Error(
      `plugin ${name} is not installed: run \`make enable\` first (${outcome.stderr})`,
    );
  }
  if (outcome.stdout !== "true") {
    throw new Error(`plugin ${name} is installed but disabled: run \`make enable\` first`);
  }
}

/** Throws unless the network and IPAM drivers under test (see config.ts) are usable. */
export async function requireDrivers(): Promise<void> {
  for (const driver of new Set([networkDriver, ipamDriver])) {
    if (!isBuiltInDriver(driver)) await requirePlugin(driver);
  }
}

/** A short random name that no earlier run can have left behind, e.g. `sy-e2e-s1-3fa9c2`. */
export function uniqueName(prefix = "sy-e2e"): string {
  return `${prefix}-${randomBytes(3).toString("hex")}`;
}

/** What `createNetwork` passes to `docker network create`. */
export interface NetworkSpec {
  name: string;
  subnet?: string;
  gateway?: string;
  ipRange?: string;
  /** `--aux-address NAME=ADDRESS` entries. */
  aux?: Record<string, string>;
  /** `-o KEY=VALUE` driver options. */
  options?: Record<string, string>;
  internal?: boolean;
}

/** The argv of `docker network create` for `spec` with the drivers under test. */
export function networkCreateArgs(spec: NetworkSpec): string[] {
  const args = ["network", "create", "--driver", networkDriver, "--ipam-driver", ipamDriver];
  if (spec.subnet) args.push("--subnet", spec.subnet);
  if (spec.gateway) args.push("--gateway", spec.gateway);
  if (spec.ipRange) args.push("--ip-range", spec.ipRange);
  for (const [key, address] of Object.entries(spec.aux ?? {})) {
    args.push("--aux-address", `${key}=${address}`);
  }
  for (const [key, value] of Object.entries(spec.options ?? {})) args.push("-o", `${key}=${value}`);
  if (spec.internal) args.push("--internal");
  args.push(spec.name);
  return args;
}

/** Creates a network with the drivers under test; returns its name. */
export async function createNetwork(spec: NetworkSpec): Promise<string> {
  await docker(networkCreateArgs(spec));
  return spec.name;
}

/** Tries to create a network with the drivers under test; reports how it ended. */
export function createNetworkMayFail(spec: NetworkSpec): Promise<CommandOutcome> {
  return dockerMayFail(networkCreateArgs(spec));
}

/** Names of all networks dockerd knows. */
export async function networkNames(): Promise<string[]> {
  const out = await docker(["network", "ls", "--format", "{{.Name}}"]);
  return out.split("\n").filter((name) => name !== "");
}

/** The driver `docker network ls` shows for `network`, or undefined when there is none. */
export async function networkDriverShown(network: string): Promise<string | undefined> {
  const out = await docker(["network", "ls", "--format", "{{.Name}}\t{{.Driver}}"]);
  for (const line of out.split("\n")) {
    const [name, driver] = line.split("\t");
    if (name === network) return driver;
  }
  return undefined;
}

/** The ID dockerd gave `network`. */
export function networkId(network: string): Promise<string> {
  return docker(["network", "inspect", "--format", "{{.Id}}", network]);
}

/** What `runContainer` starts. */
export interface ContainerSpec {
  name: string;
  network: string;
  ip?: string;
  mac?: string;
  /** One or more `--network-alias` values. */
  alias?: string | string[];
  /** `--link CONTAINER:ALIAS` values. */
  links?: string[];
  /** Extra `docker run` flags, placed before the image. */
  args?: string[];
  /** The command; `sleep 3600` when absent. */
  cmd?: string[];
}

/** The argv of `docker run -d` for `spec`. */
export function runArgs(spec: ContainerSpec): string[] {
  const args = ["run", "-d", "--name", spec.name, "--network", spec.network];
  if (spec.ip) args.push("--ip", spec.ip);
  if (spec.mac) args.push("--mac-address", spec.mac);
  const aliases = spec.alias === undefined ? [] : [spec.alias].flat();
  for (const alias of aliases) args.push("--network-alias", alias);
  for (const link of spec.links ?? []) args.push("--link", link);
  args.push(...(spec.args ?? []), TEST_IMAGE, ...(spec.cmd ?? ["sleep", "3600"]));
  return args;
}

/** Starts a detached busybox container; returns its name. Register the name for cleanup first. */
export async function runContainer(spec: ContainerSpec): Promise<string> {
  await docker(runArgs(spec));
  return spec.name;
}

/** Tries to start a container; reports how `docker run` ended (a failed one may stay Created). */
export function runContainerMayFail(spec: ContainerSpec): Promise<CommandOutcome> {
  return dockerMayFail(runArgs(spec));
}

/** Runs `argv` inside `container`; returns trimmed stdout, throws on a non-zero exit. */
export function exec(container: string, argv: readonly string[]): Promise<string> {
  return docker(["exec", container, ...argv]);
}

/** Runs `argv` inside `container`; reports how it ended. */
export function execMayFail(container: string, argv: readonly string[]): Promise<CommandOutcome> {
  return dockerMayFail(["exec", container, ...argv]);
}

/** Options for `ping`. */
export interface PingOptions {
  count?: number;
  /** Seconds busybox ping waits for the last reply. */
  timeoutS?: number;
}

/** True when `target` (address or name) answers a busybox ping sent from inside `from`. */
export async function ping(
  from: string,
  target: string,
  { count = 1, timeoutS = 2 }: PingOptions = {},
): Promise<boolean> {
  const outcome = await execMayFail(from, [
    "ping",
    "-c",
    String(count),
    "-W",
    String(timeoutS),
    target,
  ]);
  return outcome.exitCode === 0;
}

/**
 * The IPv4 address `name` resolves to inside `from` (through Docker's embedded DNS on
 * user-defined networks), or undefined when it does not resolve.
 */
export async function resolveName(from: string, name: string): Promise<string | undefined> {
  const outcome = await execMayFail(from, ["nslookup", "-type=a", name]);
  if (outcome.exitCode !== 0) return undefined;
  // busybox prints the server first ("Server:" / "Address: 127.0.0.11:53"), then the answers.
  const answers = outcome.stdout
    .split(/\n\s*\n/)
    .slice(1)
    .join("\n");
  const match = /^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$/m.exec(answers);
  return match?.[1];
}

/**
 * True when a TCP connection from inside `from` to `host:port` succeeds within 2 s.
 * Only a handshake: something other than the intended server could accept it (this sandbox
 * answers TCP for addresses routed out of the host), so prefer `httpGet` with a token when the
 * answer matters, and aim only at addresses that live on this host.
 */
export async function tcpConnect(from: string, host: string, port: number): Promise<boolean> {
  // busybox nc exits 0 once it connected and stdin ended, non-zero on refusal; `-w 2` bounds
  // the connect so a dropped SYN fails instead of hanging.
  const outcome = await execMayFail(from, [
    "sh",
    "-c",
    'nc -w 2 "$0" "$1" </dev/null >/dev/null',
    host,
    String(port),
  ]);
  return outcome.exitCode === 0;
}

/**
 * The raw HTTP/1.0 response (status line, headers, body) to `GET path` sent from inside `from`
 * with busybox nc, or undefined when nothing answered. busybox `wget` crashes on some replies.
 */
export async function httpGet(
  from: string,
  host: string,
  port: number,
  path = "/",
): Promise<string | undefined> {
  const outcome = await execMayFail(from, [
    "sh",
    "-c",
    'printf "GET %s HTTP/1.0\\r\\n\\r\\n" "$2" | nc -w 2 "$0" "$1"',
    host,
    String(port),
    path,
  ]);
  return outcome.stdout === "" ? undefined : outcome.stdout;
}

/** Command for `runContainer` that serves `body` at `/` on `port` with busybox httpd. */
export function httpServerCommand(body: string, port = 80): string[] {
  return [
    "sh",
    "-c",
    'mkdir -p /tmp/www && printf "%s\\n" "$0" >/tmp/www/index.html && exec httpd -f -p "$1" -h /tmp/www',
    body,
    String(port),
  ];
}

/** The IPv4 address dockerd reports for `container` on `network` ("" when not attached). */
export function containerAddress(container: string, network: string): Promise<string> {
  return docker([
    "inspect",
    "--format",
    `{{with index .NetworkSettings.Networks ${JSON.stringify(network)}}}{{.IPAddress}}{{end}}`,
    container,
  ]);
}

/** The gateway dockerd reports for `container` on `network` ("" when not attached). */
export function containerGateway(container: string, network: string): Promise<string> {
  return docker([
    "inspect",
    "--format",
    `{{with index .NetworkSettings.Networks ${JSON.stringify(network)}}}{{.Gateway}}{{end}}`,
    container,
  ]);
}

/** The MAC address dockerd reports for `container` on `network` ("" when not attached). */
export function containerMac(container: string, network: string): Promise<string> {
  return docker([
    "inspect",
    "--format",
    `{{with index .NetworkSettings.Networks ${JSON.stringify(network)}}}{{.MacAddress}}{{end}}`,
    container,
  ]);
}

/** One network interface as seen inside a container. */
export interface ContainerInterface {
  name: string;
  /** Host-side index of a veth's peer (`eth0@if7` → 7), when the name carries one. */
  peerIndex?: number;
  mac?: string;
  mtu?: number;
  up: boolean;
  /** IPv4 and IPv6 addresses with prefix length, e.g. "10.231.1.130/24". */
  addresses: string[];
}

/** The interfaces inside `container`, parsed from busybox `ip -o link` and `ip -o addr`. */
export async function interfacesInContainer(container: string): Promise<ContainerInterface[]> {
  const links = await exec(container, ["ip", "-o", "link"]);
  const byName = new Map<string, ContainerInterface>();
  for (const line of links.split("\n")) {
    // 6: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue \    link/ether 02:42:…
    const match = /^\d+:\s+([^:@\s]+)(?:@if(\d+))?(?:@\S+)?:\s+<([^>]*)>(.*)$/.exec(line.trim());
    if (!match) continue;
    const [, name = "", peer, flags = "", rest = ""] = match;
    const mtu = /\bmtu (\d+)/.exec(rest)?.[1];
    const mac = /link\/\S+ ([0-9a-f:]{17})/.exec(rest)?.[1];
    byName.set(name, {
      name,
      ...(peer === undefined ? {} : { peerIndex: Number(peer) }),
      ...(mac === undefined ? {} : { mac }),
      ...(mtu === undefined ? {} : { mtu: Number(mtu) }),
      up: flags.split(",").includes("UP"),
      addresses: [],
    });
  }
  const addrs = await exec(container, ["ip", "-o", "addr"]);
  for (const line of addrs.split("\n")) {
    // 6: eth0    inet 172.17.0.2/16 brd 172.17.255.255 scope global eth0\ …
    const match = /^\d+:\s+(\S+)\s+inet6?\s+(\S+)/.exec(line.trim());
    if (!match) continue;
    const [, name = "", address = ""] = match;
    byName.get(name)?.addresses.push(address);
  }
  return [...byName.values()];
}

/**
 * A simulated multi-host Docker installation on this one machine, for multi-host tests:
 * N Docker-in-Docker containers (`sy-mh-h1` … `sy-mh-hN`, each its own dockerd with the
 * Switchyard plugin installed and enabled as `switchyard:latest`) and one etcd server
 * (`sy-mh-etcd`), all on the built-in bridge network `sy-mh-net` (10.231.100.0/24) of the
 * machine's dockerd:
 *
 *   10.231.100.1   the machine itself (bridge `sy-mh-net`, reached from every host)
 *   10.231.100.2   etcd, http://10.231.100.2:2379
 *   10.231.100.11  sy-mh-h1, .12 sy-mh-h2, …
 *
 * Everything made here is named `sy-mh-*` (containers, the network and its bridge, the hosts'
 * /var/lib/docker volumes); `startCluster` first removes what a crashed run left. The names and
 * addresses are fixed, so one cluster runs on a machine at a time (run multi-host test files
 * with --test-concurrency=1).
 *
 * Inside a simulated host, `ip` and `bridge` are iproute2's (/usr/bin/ip, /usr/sbin/bridge),
 * but busybox sh runs its own `ip` applet for a bare `ip` in `sh -c '…'`: there, write
 * `/usr/bin/ip` (see `IP`). Containers inside a host cannot resolve `sy-mh-etcd` by name; use
 * the address (`etcdUrl`).
 *
 * Needs: root, dockerd on this machine, /usr/bin/etcd (apt-get install -y etcd-server) and
 * plugin/rootfs (make rootfs). The images switchyard-test/dind and switchyard-test/busybox are
 * built on demand by scripts/dind-image.sh and scripts/test-image.sh.
 */

import { access, constants } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { TEST_IMAGE } from "../../e2e/lib/config.ts";
import {
  type CommandOutcome,
  DOCKER_CLIENT,
  dockerMajor,
  docker as outerDocker,
  dockerMayFail as outerDockerMayFail,
} from "../../e2e/lib/docker.ts";
import { dropEmptiedRawTable } from "../../e2e/lib/host.ts";

/** Prefix of every container, network, bridge and volume the harness makes. */
export const PREFIX = "sy-mh-";
/**
 * The simulated hosts run the Docker release under test (`DOCKER`, as `make multihost
 * DOCKER=28` sets it; 20 by default): scripts/dind-image.sh builds one image per release.
 */
export const DOCKER_RELEASE = process.env.DOCKER || "20";
export const DIND_IMAGE = `switchyard-test/dind:${DOCKER_RELEASE}`;
export const CLUSTER_NETWORK = "sy-mh-net";
export const CLUSTER_SUBNET = "10.231.100.0/24";
/** The machine's own address on the cluster network (the bridge's). */
export const CLUSTER_GATEWAY = "10.231.100.1";
export const ETCD_CONTAINER = "sy-mh-etcd";
export const ETCD_ADDRESS = "10.231.100.2";
export const ETCD_URL = `http://${ETCD_ADDRESS}:2379`;
/** The plugin as installed in every simulated host. */
export const PLUGIN = "switchyard:latest";
/** iproute2 inside a simulated host; spell it out in `sh -c` (busybox's applet wins there). */
export const IP = "/usr/bin/ip";
export const BRIDGE = "/usr/sbin/bridge";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const ETCD_BINARY = "/usr/bin/etcd";
/** Where the plugin directory is unpacked inside a host for `docker plugin create`. */
const PLUGIN_DIR_INSIDE = "/plugin";
/** Source of the plugin's `state` mount (config.json); the directory must exist. */
const PLUGIN_STATE_DIR = "/var/lib/switchyard";
const READY_TIMEOUT_MS = 90_000;
/** SY_MH_DEBUG=1 prints how long each start-up step takes. */
const DEBUG = process.env.SY_MH_DEBUG === "1";
const epoch = Date.now();

function debug(message: string): void {
  if (DEBUG) console.error(`# sy-mh +${((Date.now() - epoch) / 1000).toFixed(1)}s ${message}`);
}

/** Address of simulated host number `index` (1-based) on the cluster network. */
export function hostAddress(index: number): string {
  if (!Number.isInteger(index) || index < 1 || index > 200) {
    throw new Error(`host index ${index} out of range 1..200`);
  }
  return `10.231.100.${10 + index}`;
}

/** One simulated Docker host: a DinD container with its own dockerd. */
export interface SimHost {
  /** Container name and hostname, e.g. `sy-mh-h1`. */
  name: string;
  /** 1-based position in the cluster. */
  index: number;
  /** Its address on `sy-mh-net`, e.g. 10.231.100.11. */
  address: string;
  /**
   * Runs argv inside the DinD container (not in a shell; PATH finds iproute2's `ip`); returns
   * trimmed stdout, throws with argv and stderr on a non-zero exit.
   */
  exec(argv: string[], input?: string): Promise<string>;
  /** Like `exec`, but reports how the command ended instead of throwing. */
  execMayFail(argv: string[], input?: string): Promise<CommandOutcome>;
  /** The docker CLI of the inner daemon (its own release's client): trimmed stdout or a throw. */
  docker(args: string[]): Promise<string>;
  dockerMayFail(args: string[]): Promise<CommandOutcome>;
  /** The last `lines` lines of the inner dockerd's log (plugin output included). */
  dockerdLog(lines?: number): Promise<string>;
}

export interface Cluster {
  hosts: SimHost[];
  /** `http://10.231.100.2:2379`: reachable from the machine, the hosts and their plugins. */
  etcdUrl: string;
  etcdContainer: string;
  /** `docker stop` of the etcd container (its data stays in the container's /tmp). */
  stopEtcd(): Promise<void>;
  /** `docker start` of the etcd container; resolves once etcd answers again. */
  startEtcd(): Promise<void>;
  /** `docker pause` of etcd (frozen, as by SIGSTOP): its clients' requests time out. */
  pauseEtcd(): Promise<void>;
  unpauseEtcd(): Promise<void>;
  /** `docker pause` of a host's DinD container: everything in it, the plugin too, stops. */
  pauseHost(host: SimHost): Promise<void>;
  unpauseHost(host: SimHost): Promise<void>;
  /**
   * `docker restart` of the host's DinD container (its /var/lib/docker is a volume, so images,
   * the plugin, networks and containers survive, as on a rebooted machine); resolves once the
   * inner dockerd answers and the plugin it re-enables serves its socket.
   */
  restartHost(host: SimHost): Promise<void>;
  /** All keys under `prefix`, sorted (etcd's v3 JSON gateway, POST /v3/kv/range). */
  etcdKeys(prefix: string): Promise<string[]>;
  /** All keys and values under `prefix`, in key order. */
  etcdEntries(prefix: string): Promise<Map<string, string>>;
  /** Removes hosts (and their volumes), etcd and `sy-mh-net`. Safe to call twice. */
  destroy(): Promise<void>;
}

export interface ClusterOptions {
  /** How many simulated hosts (1..200). */
  hosts: number;
  /** `KEY=VALUE` entries for `docker plugin set` in each host, before the plugin is enabled. */
  pluginSettings?: (host: SimHost, cluster: { etcdUrl: string }) => string[];
  /** Extra flags for each host's dockerd (e.g. `--dns 169.254.53.53`). */
  dockerdArgs?: string[];
  /** Images of the machine's dockerd to load into every host besides the test image. */
  images?: string[];
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function fail(what: string, outcome: CommandOutcome): never {
  throw new Error(
    `${what} failed (exit ${outcome.exitCode}): ${outcome.stderr || outcome.stdout}`.trim(),
  );
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = READY_TIMEOUT_MS,
  detail?: () => Promise<string>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) {
      const extra = detail ? `\n${await detail().catch((error) => String(error))}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${extra}`);
    }
    await sleep(150);
  }
}

/** Runs `source` on the machine and streams its stdout into `sh -c script` inside `container`. */
async function streamInto(
  source: { file: string; args: string[] },
  container: string,
  script: string,
): Promise<void> {
  const producer = execa(source.file, source.args, {
    cwd: REPO,
    buffer: { stdout: false },
    timeout: 300_000,
  });
  const consumer = producer.pipe(DOCKER_CLIENT, ["exec", "-i", container, "sh", "-c", script], {
    reject: false,
    timeout: 300_000,
  });
  const result = await consumer;
  if (result.exitCode !== 0) {
    throw new Error(
      `${source.file} ${source.args.join(" ")} | docker exec -i ${container} sh -c '${script}' failed: ${String(result.stderr ?? "").trim() || result.shortMessage}`,
    );
  }
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  try {
    await access(path, mode);
    return true;
  } catch {
    return false;
  }
}

/** Host paths `ldd` names for `binary` (libc, the loader…), to bind-mount at the same paths. */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await execa("ldd", [binary]);
  const paths = new Set<string>();
  for (const line of stdout.split("\n")) {
    const resolved = /=>\s+(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)/.exec(line)?.[1];
    if (resolved) paths.add(resolved);
  }
  return [...paths];
}

async function realPath(path: string): Promise<string> {
  const { stdout } = await execa("readlink", ["-f", path]);
  return stdout.trim();
}

// ---------------------------------------------------------------------------------------------
// Prerequisites and leftovers

async function ensureImage(image: string, script: string): Promise<void> {
  const present = await outerDockerMayFail(["image", "inspect", "--format", "{{.Id}}", image]);
  if (present.exitCode === 0) return;
  const built = await execa("bash", [`${REPO}scripts/${script}`], { reject: false, cwd: REPO });
  if (built.exitCode !== 0) {
    throw new Error(`scripts/${script} failed: ${String(built.stderr ?? "").trim()}`);
  }
}

async function checkPrerequisites(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("multi-host tests need root");
  const info = await outerDockerMayFail(["info", "--format", "{{.ServerVersion}}"], {
    timeoutMs: 15_000,
  });
  if (info.exitCode !== 0) {
    throw new Error(`multi-host tests need a running dockerd: run scripts/ensure-docker.sh`);
  }
  if (!(await exists(ETCD_BINARY, constants.X_OK))) {
    throw new Error(`multi-host tests need ${ETCD_BINARY}: apt-get install -y etcd-server`);
  }
  if (!(await exists(`${REPO}plugin/rootfs`)) || !(await exists(`${REPO}plugin/config.json`))) {
    throw new Error("plugin/rootfs is missing: run make rootfs first");
  }
}

function mine(lines: string): string[] {
  return lines.split("\n").filter((name) => name.startsWith(PREFIX));
}

/**
 * Removes every container (with its anonymous volumes), network and volume named `sy-mh-*`
 * on the machine's dockerd: what a crashed earlier run left. Returns the names removed.
 */
export async function removeClusterLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  const containers = mine(await outerDocker(["ps", "-a", "--format", "{{.Names}}"]));
  if (containers.length > 0) {
    const outcome = await outerDockerMayFail(["rm", "-f", "-v", ...containers]);
    if (outcome.exitCode !== 0 && !/no such container/i.test(outcome.stderr)) {
      fail(`docker rm -f -v ${containers.join(" ")}`, outcome);
    }
    removed.push(...containers);
  }
  for (const network of mine(await outerDocker(["network", "ls", "--format", "{{.Name}}"]))) {
    const outcome = await outerDockerMayFail(["network", "rm", network]);
    if (outcome.exitCode !== 0 && !/not found/i.test(outcome.stderr)) {
      fail(`docker network rm ${network}`, outcome);
    }
    removed.push(network);
  }
  const volumes = mine(await outerDocker(["volume", "ls", "--format", "{{.Name}}"]));
  if (volumes.length > 0) {
    const outcome = await outerDockerMayFail(["volume", "rm", "-f", ...volumes]);
    if (outcome.exitCode !== 0) fail(`docker volume rm ${volumes.join(" ")}`, outcome);
    removed.push(...volumes);
  }
  // The hosts and etcd ran on a built-in bridge network of the machine's dockerd.
  await dropEmptiedRawTable();
  return removed;
}

/** Names of containers, networks and volumes named `sy-mh-*` on the machine's dockerd. */
export async function clusterLeftovers(): Promise<string[]> {
  return [
    ...mine(await outerDocker(["ps", "-a", "--format", "{{.Names}}"])),
    ...mine(await outerDocker(["network", "ls", "--format", "{{.Name}}"])),
    ...mine(await outerDocker(["volume", "ls", "--format", "{{.Name}}"])),
  ];
}

// ---------------------------------------------------------------------------------------------
// etcd

async function etcdAnswers(): Promise<boolean> {
  const response = await fetch(`${ETCD_URL}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({ key: Buffer.from("sy-mh-ready").toString("base64") }),
    signal: AbortSignal.timeout(2_000),
  });
  return response.ok;
}

async function startEtcdContainer(): Promise<void> {
  // The busybox image has no libc: bind-mount etcd and what it links against, read-only.
  const mounts: string[] = ["-v", `${ETCD_BINARY}:${ETCD_BINARY}:ro`];
  for (const library of await sharedLibraries(ETCD_BINARY)) {
    mounts.push("-v", `${await realPath(library)}:${library}:ro`);
  }
  await outerDocker([
    "run",
    "-d",
    "--name",
    ETCD_CONTAINER,
    "--hostname",
    ETCD_CONTAINER,
    "--network",
    CLUSTER_NETWORK,
    "--ip",
    ETCD_ADDRESS,
    ...mounts,
    TEST_IMAGE,
    ETCD_BINARY,
    "--name",
    ETCD_CONTAINER,
    "--data-dir",
    "/tmp/etcd",
    "--listen-client-urls",
    "http://0.0.0.0:2379",
    "--advertise-client-urls",
    ETCD_URL,
    "--listen-peer-urls",
    "http://127.0.0.1:2380",
    "--initial-advertise-peer-urls",
    "http://127.0.0.1:2380",
    "--initial-cluster",
    `${ETCD_CONTAINER}=http://127.0.0.1:2380`,
  ]);
  await waitForEtcd();
  debug("etcd answers");
}

function waitForEtcd(): Promise<void> {
  return waitFor(
    `etcd at ${ETCD_URL}`,
    etcdAnswers,
    30_000,
    async () => (await outerDockerMayFail(["logs", "--tail", "20", ETCD_CONTAINER])).stderr,
  );
}

/** The first key after every key that starts with `prefix` (etcd's "prefix end"). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    const byte = end[i] ?? 0;
    if (byte < 0xff) {
      end[i] = byte + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff (or empty): to the end of the keyspace
}

async function etcdRange(prefix: string): Promise<Map<string, string>> {
  const key = prefix === "" ? Buffer.from([0]) : Buffer.from(prefix);
  const rangeEnd = prefix === "" ? Buffer.from([0]) : prefixEnd(key);
  const response = await fetch(`${ETCD_URL}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({
      key: key.toString("base64"),
      range_end: rangeEnd.toString("base64"),
    }),
    signal: AbortSignal.timeout(5_000),
  });
  if (!response.ok) {
    throw new Error(`etcd range ${prefix}: HTTP ${response.status} ${await response.text()}`);
  }
  const body = (await response.json()) as { kvs?: { key: string; value?: string }[] };
  const entries = new Map<string, string>();
  for (const kv of body.kvs ?? []) {
    entries.set(
      Buffer.from(kv.key, "base64").toString(),
      Buffer.from(kv.value ?? "", "base64").toString(),
    );
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------
// Simulated hosts

function makeHost(index: number): SimHost {
  const name = `${PREFIX}h${index}`;
  const execMayFail = (argv: string[], input?: string) =>
    outerDockerMayFail(
      ["exec", ...(input === undefined ? [] : ["-i"]), name, ...argv],
      input === undefined ? {} : { input },
    );
  const exec = async (argv: string[], input?: string) => {
    const outcome = await execMayFail(argv, input);
    if (outcome.exitCode !== 0) fail(`[${name}] ${argv.join(" ")}`, outcome);
    return outcome.stdout;
  };
  return {
    name,
    index,
    address: hostAddress(index),
    exec,
    execMayFail,
    docker: (args) => exec(["docker", ...args]),
    dockerMayFail: (args) => execMayFail(["docker", ...args]),
    dockerdLog: async (lines = 50) =>
      (await execMayFail(["tail", "-n", String(lines), "/var/log/dockerd.log"])).stdout,
  };
}

async function innerDockerAnswers(host: SimHost): Promise<boolean> {
  return (await host.dockerMayFail(["info", "--format", "{{.ServerVersion}}"])).exitCode === 0;
}

async function logsOf(host: SimHost): Promise<string> {
  const outer = await outerDockerMayFail(["logs", "--tail", "20", host.name]);
  return `${host.name} log:\n${outer.stdout}\n${outer.stderr}\ninner dockerd log:\n${await host.dockerdLog(30)}`;
}

function waitForInnerDocker(host: SimHost): Promise<void> {
  return waitFor(
    `dockerd in ${host.name}`,
    () => innerDockerAnswers(host),
    READY_TIMEOUT_MS,
    () => logsOf(host),
  );
}

/** Resolves once the plugin is enabled in `host` and its socket exists. */
async function waitForPlugin(host: SimHost): Promise<void> {
  const socket = async () => {
    const id = await host.docker(["plugin", "inspect", "--format", "{{.Id}}", PLUGIN]);
    return `/run/docker/plugins/${id}/switchyard.sock`;
  };
  await waitFor(
    `plugin ${PLUGIN} in ${host.name}`,
    async () => {
      const enabled = await host.docker(["plugin", "inspect", "--format", "{{.Enabled}}", PLUGIN]);
      if (enabled !== "true") return false;
      return (await host.execMayFail(["test", "-S", await socket()])).exitCode === 0;
    },
    READY_TIMEOUT_MS,
    () => logsOf(host),
  );
}

/** Copies an image from the machine's dockerd into a simulated host's. */
async function loadImage(host: SimHost, image: string): Promise<void> {
  await streamInto(
    { file: DOCKER_CLIENT, args: ["save", image] },
    host.name,
    "docker load >/dev/null",
  );
}

async function startHost(host: SimHost, options: ClusterOptions): Promise<void> {
  await outerDocker([
    "run",
    "-d",
    "--name",
    host.name,
    "--hostname",
    host.name,
    "--network",
    CLUSTER_NETWORK,
    "--ip",
    host.address,
    // Not --privileged: on these VMs PID 1 lacks CAP_SYS_RESOURCE and that fails. Docker 20.10
    // needs it dropped explicitly; 26 and later refuse to drop a capability the machine lacks.
    "--cap-add",
    "ALL",
    ...((await dockerMajor()) < 26 ? ["--cap-drop", "SYS_RESOURCE"] : []),
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "systempaths=unconfined",
    "--device-cgroup-rule",
    "a *:* rwm",
    // A volume, not a tmpfs: `docker restart` empties a tmpfs, and the plugin, images and
    // networks must survive a host restart. Overlayfs on overlayfs does not work, ext4 does.
    "-v",
    `${host.name}-docker:/var/lib/docker`,
    ...(options.dockerdArgs === undefined
      ? []
      : ["-e", `DOCKERD_ARGS=${options.dockerdArgs.join(" ")}`]),
    DIND_IMAGE,
  ]);
  debug(`${host.name}: container started`);
  await waitForInnerDocker(host);
  debug(`${host.name}: dockerd answers`);

  for (const image of [TEST_IMAGE, ...(options.images ?? [])]) await loadImage(host, image);
  debug(`${host.name}: images loaded`);

  await streamInto(
    { file: "tar", args: ["-C", "plugin", "-c", "."] },
    host.name,
    `rm -rf ${PLUGIN_DIR_INSIDE} && mkdir -p ${PLUGIN_DIR_INSIDE} && tar -x -C ${PLUGIN_DIR_INSIDE}`,
  );
  debug(`${host.name}: plugin directory copied`);
  await host.exec(["mkdir", "-p", PLUGIN_STATE_DIR]);
  await host.docker(["plugin", "create", PLUGIN, PLUGIN_DIR_INSIDE]);
  debug(`${host.name}: plugin created`);
  // `plugin create` copied the rootfs into /var/lib/docker/plugins.
  await host.exec(["rm", "-rf", PLUGIN_DIR_INSIDE]);
  const settings = options.pluginSettings?.(host, { etcdUrl: ETCD_URL }) ?? [];
  if (settings.length > 0) {
    // A mount's source (`state.source=/x`) must exist before the plugin is enabled.
    for (const setting of settings) {
      const match = /^[^=]+\.source=(\/.*)$/.exec(setting);
      if (match?.[1]) await host.exec(["mkdir", "-p", match[1]]);
    }
    await host.docker(["plugin", "set", PLUGIN, ...settings]);
  }
  const enabled = await host.dockerMayFail(["plugin", "enable", PLUGIN]);
  if (enabled.exitCode !== 0) {
    throw new Error(
      `docker plugin enable ${PLUGIN} in ${host.name} failed: ${enabled.stderr}\n${await logsOf(host)}`,
    );
  }
  await waitForPlugin(host);
  debug(`${host.name}: plugin enabled`);
}

// ---------------------------------------------------------------------------------------------
// The cluster

/**
 * Starts etcd and `options.hosts` simulated Docker hosts (in parallel), each with the plugin
 * enabled. On failure, removes what it made (unless SY_MH_KEEP=1) and throws.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  if (!Number.isInteger(options.hosts) || options.hosts < 1 || options.hosts > 200) {
    throw new Error(`hosts must be 1..200, not ${options.hosts}`);
  }
  debug("startCluster");
  await checkPrerequisites();
  await removeClusterLeftovers();
  await Promise.all([
    ensureImage(TEST_IMAGE, "test-image.sh"),
    ensureImage(DIND_IMAGE, "dind-image.sh"),
  ]);
  // Other images (e.g. switchyard-test/haproxy) are built by scripts/<name>-image.sh.
  for (const image of options.images ?? []) {
    const script = /^switchyard-test\/([a-z0-9-]+):/.exec(image)?.[1];
    if (script === undefined) throw new Error(`no script builds image ${image}`);
    await ensureImage(image, `${script}-image.sh`);
  }

  const hosts = Array.from({ length: options.hosts }, (_, i) => makeHost(i + 1));
  let destroyed = false;
  const destroy = async () => {
    if (destroyed) return;
    await removeClusterLeftovers();
    destroyed = true;
  };

  try {
    await outerDocker([
      "network",
      "create",
      "--driver",
      "bridge",
      "--subnet",
      CLUSTER_SUBNET,
      "--gateway",
      CLUSTER_GATEWAY,
      "-o",
      `com.docker.network.bridge.name=${CLUSTER_NETWORK}`,
      CLUSTER_NETWORK,
    ]);
    debug(`${CLUSTER_NETWORK} created`);
    await Promise.all([startEtcdContainer(), ...hosts.map((host) => startHost(host, options))]);
  } catch (error) {
    if (process.env.SY_MH_KEEP !== "1") await destroy().catch(() => {});
    throw error;
  }

  return {
    hosts,
    etcdUrl: ETCD_URL,
    etcdContainer: ETCD_CONTAINER,
    async stopEtcd() {
      await outerDocker(["stop", "-t", "10", ETCD_CONTAINER]);
    },
    async startEtcd() {
      await outerDocker(["start", ETCD_CONTAINER]);
      await waitForEtcd();
    },
    async pauseEtcd() {
      await outerDocker(["pause", ETCD_CONTAINER]);
    },
    async unpauseEtcd() {
      await outerDocker(["unpause", ETCD_CONTAINER]);
      await waitForEtcd();
    },
    async pauseHost(host) {
      await outerDocker(["pause", host.name]);
    },
    async unpauseHost(host) {
      await outerDocker(["unpause", host.name]);
    },
    async restartHost(host) {
      await outerDocker(["restart", "-t", "20", host.name]);
      await waitForInnerDocker(host);
      const installed = await host.dockerMayFail(["plugin", "inspect", PLUGIN]);
      if (installed.exitCode === 0) await waitForPlugin(host);
    },
    async etcdKeys(prefix) {
      return [...(await etcdRange(prefix)).keys()];
    },
    etcdEntries: etcdRange,
    destroy,
  };
}

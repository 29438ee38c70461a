// Shipping like a real plugin: push to a registry, install from it, upgrade to a
// new version and back, with networks, static addresses and published ports surviving;
// settings validated at start-up; state newer than the plugin knows refused clearly.
// A local registry (Debian's docker-registry) on 127.0.0.1:5000 stands in for a real one.

import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { DOCKERD_LOG, isSwitchyard, networkDriver } from "./lib/config.ts";
import {
  containerAddress,
  docker,
  dockerMayFail,
  ping,
  requireDocker,
  requireRoot,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import { assertNothingLeft, type HostSnapshot, snapshotHost } from "./lib/host.ts";
import { removeLeftovers, track } from "./lib/track.ts";
import { waitFor } from "./lib/wait.ts";

const execFileAsync = promisify(execFile);
const REGISTRY = "127.0.0.1:5000";
const VERSION = (JSON.parse(readFileSync("package.json", "utf8")) as { version: string }).version;
const ALIAS = "sy-e2e-reg";
const INSTALLED = `${ALIAS}:latest`;
const PREFIX = "sy-e2e-rg";
const NEXT = `${REGISTRY}/switchyard:next-e2e`;

async function registryAnswers(): Promise<boolean> {
  try {
    const response = await fetch(`http://${REGISTRY}/v2/`);
    return response.ok;
  } catch {
    return false;
  }
}

/** HTTP GET of host:port through busybox nc on the host; the body's last line. */
async function fetchFromHost(port: number): Promise<string> {
  const { stdout } = await execFileAsync("sh", [
    "-c",
    `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 127.0.0.1 ${port} | tail -1`,
  ]);
  return stdout.trim();
}

describe("registry: push, install, upgrade, downgrade", {
  skip: !isSwitchyard && "Switchyard only",
}, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let registry: ChildProcess | undefined;
  let workDir = "";
  let stateDir = "";
  const network = uniqueName(PREFIX);
  const pinned = uniqueName(PREFIX);
  const web = uniqueName(PREFIX);
  const addresses = new Set<string>();

  before(async () => {
    requireRoot();
    await requireDocker();
    try {
      await execFileAsync("sh", ["-c", "command -v docker-registry"]);
    } catch {
      throw new Error(
        "registry tests need Debian's docker-registry: apt-get install -y docker-registry (make docker does it)",
      );
    }
    await removeLeftovers(PREFIX);
    await dockerMayFail(["plugin", "rm", "-f", INSTALLED]);
    workDir = mkdtempSync(join(tmpdir(), "sy-e2e-registry-"));
    stateDir = join(workDir, "state");
    mkdirSync(stateDir);
    writeFileSync(
      join(workDir, "config.yml"),
      [
        "version: 0.1",
        `storage: {filesystem: {rootdirectory: ${join(workDir, "data")}}, delete: {enabled: true}}`,
        `http: {addr: "${REGISTRY}"}`,
        "",
      ].join("\n"),
    );
    if (await registryAnswers())
      throw new Error(`something already listens on ${REGISTRY}; stop it first`);
    registry = spawn("docker-registry", ["serve", join(workDir, "config.yml")], {
      stdio: "ignore",
    });
    await waitFor("the local registry", registryAnswers);
    // One Switchyard per host: the installed copy owns the firewall table while it runs.
    await docker(["plugin", "disable", "-f", networkDriver]);
    snapshot = await snapshotHost();
  });

  after(async () => {
    await t.cleanup();
    await dockerMayFail(["plugin", "disable", "-f", INSTALLED]);
    await dockerMayFail(["plugin", "rm", "-f", INSTALLED]);
    await dockerMayFail(["plugin", "rm", "-f", NEXT]);
    registry?.kill();
    if (workDir !== "") rmSync(workDir, { recursive: true, force: true });
    await dockerMayFail(["plugin", "enable", networkDriver]);
    if (snapshot) await assertNothingLeft(snapshot);
  });

  /**
   * Docker 20.10 bug: after `docker plugin upgrade` the plugin starts with the manifest's
   * default mount source although `docker plugin inspect` shows the configured one; setting
   * it again (as the README tells users) makes it true.
   */
  async function reapplyStateSource() {
    await docker(["plugin", "set", INSTALLED, `state.source=${stateDir}`]);
  }

  /** Enables, waiting out dockerd's cleanup of a plugin that failed to start. */
  async function enableWhenReady() {
    for (let attempt = 0; ; attempt++) {
      const outcome = await dockerMayFail(["plugin", "enable", INSTALLED]);
      // An enable that timed out may have finished in the background.
      if (outcome.exitCode === 0 || /already enabled/.test(outcome.stderr)) return;
      // Right after a failed start the daemon may still be tearing that task down: Docker
      // 20.10 says "already in use", Docker 28's containerd fails in several ways ("failed to
      // create task", "cannot start a container that has stopped", "unable to copy pipes", the
      // dying process's socket gone). Try again for 30 s; a real failure stays and is thrown.
      if (attempt >= 30) {
        throw new Error(`docker plugin enable ${INSTALLED}: ${outcome.stderr}`);
      }
      await sleep(1_000);
    }
  }

  async function checkNetwork(stage: string) {
    assert.equal(
      await containerAddress(pinned, network),
      "10.231.13.50",
      `${stage}: static address`,
    );
    const webAddress = await containerAddress(web, network);
    assert.equal(await ping(pinned, webAddress), true, `${stage}: containers reach each other`);
    await waitFor(
      `${stage}: published port 18181`,
      async () => (await fetchFromHost(18181)) === "switchyard-e2e",
    );
    const fresh = t.container(uniqueName(PREFIX));
    await runContainer({ name: fresh, network });
    const address = await containerAddress(fresh, network);
    assert.ok(!addresses.has(address), `${stage}: ${address} handed out twice`);
    addresses.add(address);
  }

  it("make push puts VERSION and latest in the registry", async () => {
    await execFileAsync("make", ["--no-print-directory", "push", `REGISTRY=${REGISTRY}`], {
      maxBuffer: 16 * 1024 * 1024,
    });
    const response = await fetch(`http://${REGISTRY}/v2/switchyard/tags/list`);
    const { tags } = (await response.json()) as { tags: string[] };
    assert.deepEqual([...tags].sort(), [VERSION, "latest"].sort());
  });

  it("installs from the registry and runs networks with it", async () => {
    await docker(
      [
        "plugin",
        "install",
        "--grant-all-permissions",
        "--alias",
        ALIAS,
        `${REGISTRY}/switchyard:${VERSION}`,
        `state.source=${stateDir}`,
      ].filter(Boolean),
    );
    assert.equal(await docker(["plugin", "inspect", "-f", "{{.Enabled}}", INSTALLED]), "true");
    await docker([
      "network",
      "create",
      "--driver",
      INSTALLED,
      "--ipam-driver",
      INSTALLED,
      "--subnet",
      "10.231.13.0/24",
      "--gateway",
      "10.231.13.1",
      t.network(network),
    ]);
    await runContainer({ name: t.container(pinned), network, ip: "10.231.13.50" });
    await runContainer({
      name: t.container(web),
      network,
      args: ["-p", "18181:80"],
      cmd: ["sh", "-c", "echo switchyard-e2e > /tmp/index.html && httpd -f -p 80 -h /tmp"],
    });
    addresses.add("10.231.13.50");
    addresses.add(await containerAddress(web, network));
    await checkNetwork("installed from the registry");
  });

  it("upgrades to a new version with networks, addresses and ports intact", async () => {
    // Version B: the same build with another manifest description, pushed under a new tag.
    const dir = join(workDir, "next");
    mkdirSync(dir);
    cpSync("plugin/config.json", join(dir, "config.json"));
    const manifest = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    manifest.description = `${manifest.description} (e2e next)`;
    writeFileSync(join(dir, "config.json"), JSON.stringify(manifest));
    // Hard links, not a symlink (the client tars the directory and keeps symlinks as they
    // are); the name file is replaced, not written through the link: Docker 20.10 refuses a
    // byte-identical second rootfs.
    await execFileAsync("cp", [
      "-al",
      join(process.cwd(), "plugin", "rootfs"),
      join(dir, "rootfs"),
    ]);
    const nameFile = join(dir, "rootfs", "etc", "switchyard-plugin-name");
    rmSync(nameFile);
    writeFileSync(nameFile, NEXT);
    await docker(["plugin", "create", NEXT, dir]);
    await docker(["plugin", "push", NEXT]);
    await docker(["plugin", "rm", "-f", NEXT]);

    await docker(["plugin", "disable", "-f", INSTALLED]);
    // The client asks "Plugin images do not match, are you sure?" when the name changes.
    await docker(["plugin", "upgrade", "--grant-all-permissions", INSTALLED, NEXT], {
      input: "y\n",
    });
    await reapplyStateSource();
    await docker(["plugin", "enable", INSTALLED]);
    assert.match(
      await docker(["plugin", "inspect", "-f", "{{.Config.Description}}", INSTALLED]),
      /e2e next/,
    );
    await checkNetwork("after upgrade");
  });

  it("downgrades back to the first version (same state format)", async () => {
    await docker(["plugin", "disable", "-f", INSTALLED]);
    await docker(
      [
        "plugin",
        "upgrade",
        "--grant-all-permissions",
        INSTALLED,
        `${REGISTRY}/switchyard:${VERSION}`,
      ],
      { input: "y\n" },
    );
    await reapplyStateSource();
    await docker(["plugin", "enable", INSTALLED]);
    assert.doesNotMatch(
      await docker(["plugin", "inspect", "-f", "{{.Config.Description}}", INSTALLED]),
      /e2e next/,
    );
    await checkNetwork("after downgrade");
  });

  it("a bad setting stops the plugin with a log line naming it", async () => {
    await docker(["plugin", "disable", "-f", INSTALLED]);
    await docker(["plugin", "set", INSTALLED, "LOG_LEVEL=chatty"]);
    // Only what this attempt logs counts: an earlier run may have left the same line.
    const before = readFileSync(DOCKERD_LOG).length;
    const enabled = await dockerMayFail(["plugin", "enable", "--timeout", "5", INSTALLED]);
    assert.notEqual(enabled.exitCode, 0, "enable fails");
    const log = readFileSync(DOCKERD_LOG).subarray(before).toString("utf8");
    assert.match(log, /setting LOG_LEVEL=\W*chatty\W* must be one of/);
    await dockerMayFail(["plugin", "disable", "-f", INSTALLED]);
    await docker(["plugin", "set", INSTALLED, "LOG_LEVEL=info"]);
  });

  it("state from a newer Switchyard is refused, not misread", async () => {
    const file = join(stateDir, "state.json");
    const saved = readFileSync(file, "utf8");
    const newer = JSON.stringify({ ...JSON.parse(saved), version: 99 });
    writeFileSync(file, newer);
    try {
      // The plugin comes up (so dockerd does not restart it in a loop) but refuses every
      // request, saying why, and never touches the state it cannot read.
      await enableWhenReady();
      const refused = await dockerMayFail([
        "network",
        "create",
        "--driver",
        INSTALLED,
        "--ipam-driver",
        INSTALLED,
        "--subnet",
        "10.231.14.0/24",
        `${PREFIX}-refused`,
      ]);
      assert.notEqual(refused.exitCode, 0, "network create is refused");
      assert.match(refused.stderr, /has version 99; this Switchyard reads version 1/);
      assert.equal(readFileSync(file, "utf8"), newer, "the newer state is left as it was");
    } finally {
      await dockerMayFail(["plugin", "disable", "-f", INSTALLED]);
      writeFileSync(file, saved);
    }
    await docker(["plugin", "enable", INSTALLED]);
    await checkNetwork("after the refused start");
  });
});

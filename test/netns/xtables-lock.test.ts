import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { requireRoot } from "../support/netns.ts";

/**
 * What iptables-legacy does with its lock when run as the plugin runs it: in a mount
 * namespace of its own whose /run is not the host's (the plugin's rootfs), and in a network
 * namespace (here a throwaway one). The "host's" lock is a file in a temporary directory,
 * held by `flock` as a dockerd's iptables would hold /run/xtables.lock; the real one is never
 * touched. These are the facts the plugin manifest's choice of lock mount rests on.
 */
describe("the xtables lock seen from the plugin's mount namespace", { timeout: 60_000 }, () => {
  let dir: string;
  let hostLock: string;
  let holder: ChildProcess | undefined;

  before(() => {
    requireRoot();
    for (const tool of ["iptables-legacy", "unshare", "flock"]) {
      try {
        execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
      } catch {
        throw new Error(`this test needs ${tool}: apt-get install -y iptables util-linux`);
      }
    }
    dir = mkdtempSync(join(tmpdir(), "sy-xtlock-"));
    hostLock = join(dir, "xtables.lock");
  });

  after(() => {
    holder?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Holds the "host's" lock, as a long iptables-legacy run of dockerd would. */
  async function holdHostLock(): Promise<void> {
    holder = spawn("flock", [hostLock, "sleep", "20"], { stdio: "ignore" });
    const deadline = Date.now() + 5_000;
    while (spawnSync("flock", ["-n", hostLock, "true"]).status === 0) {
      if (Date.now() > deadline) throw new Error("flock never took the lock");
      await sleep(20);
    }
  }

  /**
   * Runs `iptables-legacy -w 1 -L` in new mount and network namespaces whose /run is a fresh
   * tmpfs (as the plugin's is its rootfs directory), after `setup` (shell, run first there).
   */
  function pluginIptables(setup: string, env: Record<string, string> = {}) {
    const script = `set -e; mount -t tmpfs sy-run /run; ${setup}; exec iptables-legacy -w 1 -n -L INPUT`;
    const result = spawnSync("unshare", ["-m", "-n", "sh", "-c", script], {
      encoding: "utf8",
      env: { ...process.env, ...env },
    });
    return { status: result.status, stderr: result.stderr };
  }

  it("without a mount, the plugin's iptables-legacy takes a lock of its own", async () => {
    writeFileSync(hostLock, "");
    await holdHostLock();
    const run = pluginIptables("true");
    assert.equal(run.status, 0, `it did not wait for the host's holder: ${run.stderr}`);
  });

  it("a read-only bind mount of the host's lock file makes it wait for the host's holder", () => {
    const run = pluginIptables(
      `touch /run/xtables.lock; mount --bind ${hostLock} /run/xtables.lock; mount -o remount,bind,ro /run/xtables.lock`,
    );
    assert.equal(run.status, 4, run.stderr);
    assert.match(run.stderr, /Another app is currently holding the xtables lock/);
  });

  it("XTABLES_LOCKFILE names the lock: a path to the host's file works the same", () => {
    const run = pluginIptables(
      `mkdir /run/host; touch /run/host/xtables.lock; mount --bind ${hostLock} /run/host/xtables.lock`,
      { XTABLES_LOCKFILE: "/run/host/xtables.lock" },
    );
    assert.equal(run.status, 4, run.stderr);
    assert.match(run.stderr, /Another app is currently holding the xtables lock/);
  });

  it("on a read-only directory mount, a lock file that does not exist yet is fatal", () => {
    rmSync(hostLock);
    const run = pluginIptables(
      `mkdir /run/host; mount --bind ${dir} /run/host; mount -o remount,bind,ro /run/host`,
      { XTABLES_LOCKFILE: "/run/host/xtables.lock" },
    );
    assert.equal(run.status, 4);
    assert.match(
      run.stderr,
      /can't open lock file \/run\/host\/xtables.lock: Read-only file system/,
    );
  });

  it("a bind mount of a lock file that does not exist yet cannot be made", () => {
    const run = pluginIptables(
      `touch /run/xtables.lock; mount --bind ${hostLock} /run/xtables.lock`,
    );
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /does not exist|No such file/);
  });
});

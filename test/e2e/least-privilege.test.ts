// Least privilege: with the default manifest the plugin can reach no host socket (no mount of
// the host's /run, /var/run or a socket file); the Docker API is an opt-in the user grants
// with `docker plugin set switchyard:latest docker-api.source=/run`, and only then is
// docker.sock there. Checked from inside the running plugin's mount namespace.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, describe, it } from "node:test";
import { isSwitchyard, networkDriver } from "./lib/config.ts";
import { docker } from "./lib/docker.ts";
import { pluginPid } from "./lib/host.ts";
import { waitFor } from "./lib/wait.ts";

/** Every socket file the process `pid` can see in its mount namespace (not /proc, /sys, /dev). */
function socketsSeenBy(pid: number): string[] {
  const walk = `
    const { readdirSync, lstatSync } = require("node:fs");
    const found = [];
    const visit = (dir, depth) => {
      if (depth > 12) return;
      let entries = [];
      try { entries = readdirSync(dir); } catch { return; }
      for (const name of entries) {
        const path = (dir === "/" ? "" : dir) + "/" + name;
        if (["/proc", "/sys", "/dev"].includes(path)) continue;
        let stat;
        try { stat = lstatSync(path); } catch { continue; }
        if (stat.isSocket()) found.push(path);
        else if (stat.isDirectory()) visit(path, depth + 1);
      }
    };
    visit("/", 0);
    process.stdout.write(JSON.stringify(found));
  `;
  // Entering the mount namespace makes its root (the plugin's rootfs) the root.
  const output = execFileSync(
    "nsenter",
    ["-t", String(pid), "-m", "--", "/usr/local/bin/node", "-e", walk],
    { encoding: "utf8", timeout: 60_000 },
  );
  return JSON.parse(output) as string[];
}

/** The host paths the plugin's mounts come from, as Docker will mount them. */
async function mountSources(): Promise<Record<string, string>> {
  const mounts = JSON.parse(
    await docker(["plugin", "inspect", "-f", "{{json .Settings.Mounts}}", networkDriver]),
  ) as { Name: string; Source: string | null }[];
  return Object.fromEntries(mounts.map((mount) => [mount.Name, mount.Source ?? ""]));
}

async function runningPid(): Promise<number> {
  const id = await docker(["plugin", "inspect", "-f", "{{.Id}}", networkDriver]);
  let pid: number | undefined;
  await waitFor("the plugin's process", () => {
    pid = pluginPid(id);
    return pid !== undefined;
  });
  assert.ok(pid !== undefined);
  return pid;
}

/** Re-enables the plugin with `docker-api.source` set to `source`. */
async function grant(source: string): Promise<void> {
  await docker(["plugin", "disable", "-f", networkDriver]);
  try {
    await docker(["plugin", "set", networkDriver, `docker-api.source=${source}`]);
  } finally {
    await docker(["plugin", "enable", networkDriver]);
  }
}

describe("least privilege", { skip: !isSwitchyard && "Switchyard only", timeout: 300_000 }, () => {
  let stateSource = "";

  after(async () => {
    // Back to the default whatever happened: the state directory (no access).
    if (stateSource !== "" && (await mountSources())["docker-api"] !== stateSource)
      await grant(stateSource);
  });

  it("the default manifest mounts nothing of /run and shows the plugin no host socket", async () => {
    const sources = await mountSources();
    stateSource = sources.state ?? "";
    assert.ok(stateSource !== "", `a state mount: ${JSON.stringify(sources)}`);
    assert.equal(sources["docker-api"], stateSource, "docker-api defaults to the state directory");
    for (const [name, source] of Object.entries(sources)) {
      assert.doesNotMatch(source, /^\/(var\/)?run(\/|$)|\.sock$/, `mount ${name}: ${source}`);
    }
    const sockets = socketsSeenBy(await runningPid());
    assert.deepEqual(
      sockets.filter(
        (path) => !/^\/run\/docker\/plugins\/(?:[0-9a-f]{64}\/)?switchyard\.sock$/.test(path),
      ),
      [],
      `only its own socket: ${JSON.stringify(sockets)}`,
    );
  });

  it("docker-api.source=/run grants docker.sock, and only then", async () => {
    assert.ok(stateSource !== "", "runs after the default-manifest check");
    await grant("/run");
    const sockets = socketsSeenBy(await runningPid());
    assert.ok(sockets.includes("/host/docker-api/docker.sock"), JSON.stringify(sockets));
    await grant(stateSource);
    assert.equal(
      socketsSeenBy(await runningPid()).includes("/host/docker-api/docker.sock"),
      false,
      "gone again with the default source",
    );
  });
});

// A dockerd run with --live-restore keeps containers running while it restarts; their
// Switchyard networking (container to container, published ports) must keep working through
// the restart and after it, and new containers must attach afterwards.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { isSwitchyard } from "./lib/config.ts";
import {
  containerAddress,
  createNetwork,
  docker,
  httpServerCommand,
  ping,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import { dockerdPid, type HostSnapshot } from "./lib/host.ts";
import { httpGetFrom, ON_HOST, waitForHttpd } from "./lib/probe.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";
import { waitFor } from "./lib/wait.ts";

const PREFIX = "sy-e2e-lr";
const LINK_PREFIX = "sye2elr";
const PORT = 18095;

/** Stops dockerd and starts it again (through ensure-docker.sh) with these extra flags. */
async function restartDockerd(flags: string): Promise<void> {
  const pid = dockerdPid();
  if (pid !== undefined) {
    process.kill(pid, "SIGTERM");
    await waitFor("dockerd to stop", async () => dockerdPid() === undefined, 60_000);
  }
  execFileSync(`${process.cwd()}/scripts/ensure-docker.sh`, {
    stdio: "ignore",
    env: { ...process.env, DOCKERD_FLAGS: flags },
  });
}

describe("dockerd --live-restore", { skip: !isSwitchyard && "Switchyard only" }, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const network = uniqueName(PREFIX);
  const token = uniqueName("live");
  const web = uniqueName(PREFIX);
  const peer = uniqueName(PREFIX);
  let webAddress = "";

  before(async () => {
    await restartDockerd("--live-restore");
    snapshot = await startScenario(PREFIX, LINK_PREFIX);
    await createNetwork({ name: t.network(network), subnet: "10.231.35.0/24" });
    await runContainer({
      name: t.container(web),
      network,
      args: ["-p", `${PORT}:80`],
      cmd: httpServerCommand(token),
    });
    await runContainer({ name: t.container(peer), network });
    await waitForHttpd(web, token);
    webAddress = await containerAddress(web, network);
  });

  after(async () => {
    await endScenario(t, snapshot);
    // Back to a plain daemon for the tests after this one.
    await restartDockerd("");
  });

  it("keeps traffic and published ports while dockerd is down and after it returns", {
    timeout: 300_000,
  }, async () => {
    const pid = dockerdPid();
    assert.ok(pid !== undefined);
    process.kill(pid, "SIGTERM");
    await waitFor("dockerd to stop", async () => dockerdPid() === undefined, 60_000);
    // dockerd is down: the containers and the plugin run on.
    const page = await httpGetFrom(ON_HOST, "127.0.0.1", PORT);
    assert.match(page ?? "", new RegExp(token), "the published port answers while dockerd is down");
    execFileSync(`${process.cwd()}/scripts/ensure-docker.sh`, {
      stdio: "ignore",
      env: { ...process.env, DOCKERD_FLAGS: "--live-restore" },
    });
    const running = await docker(["inspect", "-f", "{{.State.Running}}", web, peer]);
    assert.deepEqual(
      running.split("\n").map((line) => line.trim()),
      ["true", "true"],
    );
    assert.equal(await ping(peer, webAddress), true, "containers still reach each other");
    assert.match((await httpGetFrom(ON_HOST, "127.0.0.1", PORT)) ?? "", new RegExp(token));
    const fresh = t.container(uniqueName(PREFIX));
    await runContainer({ name: fresh, network });
    assert.equal(await ping(fresh, webAddress), true, "a new container attaches and reaches web");
  });
});

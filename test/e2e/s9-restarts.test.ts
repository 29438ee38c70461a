// S9 — restarts lose nothing (SCENARIOS.md): with containers running, delete the plugin-made
// bridge by hand (what a host reboot does) and restart the plugin; restart dockerd itself.
// Afterwards the network works again, restarted containers keep their static addresses, no
// address is handed out twice and new containers attach normally.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { isSwitchyard, networkDriver } from "./lib/config.ts";
import {
  containerAddress,
  createNetwork,
  docker,
  networkId,
  ping,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import { dockerdPid, type HostSnapshot, hostLink } from "./lib/host.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";
import { waitFor } from "./lib/wait.ts";

const PREFIX = "sy-e2e-s9";
const SUBNET = "10.231.10.0/24";
const STATIC = "10.231.10.50";

describe("S9: restarts lose nothing", { skip: !isSwitchyard && "Switchyard only" }, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const network = uniqueName(PREFIX);
  const pinned = uniqueName(PREFIX);
  const floating = uniqueName(PREFIX);
  let bridge = "";

  before(async () => {
    snapshot = await startScenario(PREFIX);
    await createNetwork({ name: t.network(network), subnet: SUBNET, gateway: "10.231.10.1" });
    bridge = `sy-${(await networkId(network)).slice(0, 12)}`;
    const always = ["--restart", "always"];
    await runContainer({ name: t.container(pinned), network, ip: STATIC, args: always });
    await runContainer({ name: t.container(floating), network, args: always });
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  async function checkWorking(stage: string) {
    assert.equal(await containerAddress(pinned, network), STATIC, `${stage}: static address kept`);
    const floatingAddress = await containerAddress(floating, network);
    assert.equal(
      await ping(pinned, floatingAddress),
      true,
      `${stage}: containers reach each other`,
    );
    assert.equal(await ping(pinned, "10.231.10.1"), true, `${stage}: the gateway answers`);
    const fresh = t.container(uniqueName(PREFIX));
    await runContainer({ name: fresh, network });
    const freshAddress = await containerAddress(fresh, network);
    assert.ok(
      ![STATIC, floatingAddress].includes(freshAddress),
      `${stage}: ${freshAddress} handed out twice`,
    );
    assert.equal(await ping(fresh, STATIC), true, `${stage}: a new container attaches normally`);
    await docker(["rm", "-f", fresh]);
  }

  it("a bridge deleted by hand comes back when the plugin restarts", async () => {
    execFileSync("ip", ["link", "del", bridge]);
    assert.equal(
      await ping(pinned, "10.231.10.1", { timeoutS: 1 }),
      false,
      "cut off without its bridge",
    );
    await docker(["plugin", "disable", "-f", networkDriver]);
    await docker(["plugin", "enable", networkDriver]);
    await waitFor(
      "the bridge to be re-created",
      async () => (await hostLink(bridge)) !== undefined,
    );
    await waitFor("containers to reach each other again", async () =>
      ping(pinned, await containerAddress(floating, network)),
    );
    await checkWorking("after bridge deletion and plugin restart");
  });

  it("dockerd restart (with the bridge gone too, as after a reboot) brings containers back", async () => {
    const pid = dockerdPid();
    assert.ok(pid !== undefined, "dockerd runs and wrote /var/run/docker.pid");
    process.kill(pid, "SIGTERM");
    await waitFor("dockerd to stop", async () => dockerdPid() === undefined, 60_000);
    execFileSync("ip", ["link", "del", bridge], { stdio: "ignore" });
    execFileSync(`${process.cwd()}/scripts/ensure-docker.sh`, { stdio: "ignore" });
    await waitFor("both containers to run again", async () => {
      const states = await docker(["inspect", "-f", "{{.State.Running}}", pinned, floating]);
      return states.split("\n").every((line) => line.trim() === "true");
    });
    await checkWorking("after dockerd restart");
  });
});

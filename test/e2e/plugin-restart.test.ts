// Restarts lose nothing (the single-host part of S9): kill -9 of the plugin process and a
// forced disable/enable keep every network and address, and allocation carries on without
// handing an address out twice.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isSwitchyard, networkDriver } from "./lib/config.ts";
import {
  containerAddress,
  createNetwork,
  docker,
  dockerMajor,
  ping,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import { type HostSnapshot, pluginPid } from "./lib/host.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";
import { waitFor } from "./lib/wait.ts";

const PREFIX = "sy-e2e-rs";
const LINK_PREFIX = "sye2er";

describe("plugin restarts keep networks and addresses", {
  skip: !isSwitchyard && "Switchyard only",
}, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const network = uniqueName(PREFIX);
  const addresses = new Map<string, string>();
  let pluginId = "";

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);
    pluginId = await docker(["plugin", "inspect", "-f", "{{.Id}}", networkDriver]);
    await createNetwork({
      name: t.network(network),
      subnet: "10.231.9.0/24",
      gateway: "10.231.9.1",
    });
    for (const [name, ip] of [
      [uniqueName(PREFIX), "10.231.9.50"],
      [uniqueName(PREFIX), undefined],
    ] as const) {
      await runContainer({ name: t.container(name), network, ...(ip === undefined ? {} : { ip }) });
      addresses.set(name, await containerAddress(name, network));
    }
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  async function checkEverythingStillWorks(stage: string) {
    const names = [...addresses.keys()];
    const [first, second] = names as [string, string];
    assert.equal(
      await ping(first, addresses.get(second) ?? ""),
      true,
      `${stage}: peers reach each other`,
    );
    const fresh = t.container(uniqueName(PREFIX));
    await runContainer({ name: fresh, network });
    const address = await containerAddress(fresh, network);
    assert.ok(
      ![...addresses.values()].includes(address),
      `${stage}: new container got ${address}, already held by another`,
    );
    addresses.set(fresh, address);
    assert.equal(
      await ping(fresh, addresses.get(first) ?? ""),
      true,
      `${stage}: new container reaches old`,
    );
    const refused = await docker([
      "run",
      "--rm",
      "--network",
      network,
      "--ip",
      "10.231.9.50",
      "switchyard-test/busybox",
      "true",
    ]).then(
      () => false,
      (error: Error) => /in use|10\.231\.9\.50/.test(error.message),
    );
    assert.equal(refused, true, `${stage}: the static address is still taken`);
  }

  it("survives kill -9 of the plugin process (dockerd restarts it)", async () => {
    const pid = pluginPid(pluginId);
    assert.ok(pid !== undefined, "plugin task is running");
    process.kill(pid, "SIGKILL");
    await waitFor("the plugin to come back", () => {
      const again = pluginPid(pluginId);
      return again !== undefined && again !== pid;
    });
    await checkEverythingStillWorks("after kill -9");
  });

  it("survives a forced disable and enable", async () => {
    await docker(["plugin", "disable", "-f", networkDriver]);
    await docker(["plugin", "enable", networkDriver]);
    await checkEverythingStillWorks("after disable/enable");
  });

  it("plain disable is refused while containers use the plugin; either way nothing is lost", async () => {
    const outcome = await docker(["plugin", "disable", networkDriver]).then(
      () => "disabled",
      (error: Error) => error.message,
    );
    if (outcome === "disabled") await docker(["plugin", "enable", networkDriver]);
    // 20.10 refuses while networks exist; 28 was seen both refusing (containers attached)
    // and allowing it (networks only), so there only the outcome below is required.
    if ((await dockerMajor()) < 28) assert.match(outcome, /in use|is in use|networks/i);
    else assert.match(outcome, /^disabled$|in use/i);
    await checkEverythingStillWorks("after a plain disable attempt");
  });
});

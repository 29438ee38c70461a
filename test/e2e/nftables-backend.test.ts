// Docker 29's nftables firewall backend (`make e2e DOCKER=29 FIREWALL_BACKEND=nftables`): there
// Docker has no DOCKER-USER and programs nothing in iptables, so Switchyard must not either,
// and networks still work. An iptables FORWARD policy of DROP (what an iptables-mode daemon
// leaves behind) breaks every bridge there, Docker's own too: Switchyard does not override the
// host's policy, it says so in the daemon log and in its status view, and stops saying so once
// the policy is ACCEPT again.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { DOCKER_TAG, DOCKERD_LOG, isSwitchyard, NFTABLES_BACKEND } from "./lib/config.ts";
import {
  containerAddress,
  createNetwork,
  docker,
  ping,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import type { HostSnapshot } from "./lib/host.ts";
import { callPlugin, pluginSocket } from "./lib/plugin-socket.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";
import { waitFor } from "./lib/wait.ts";

const PREFIX = "sy-e2e-nft";

/** Both iptables variants' rules, all tables, as iptables-save prints them. */
function iptablesRules(): string {
  return ["iptables-nft-save", "iptables-legacy-save", "ip6tables-nft-save"]
    .map((save) => {
      try {
        return execFileSync(save, { encoding: "utf8" });
      } catch (error) {
        throw new Error(`${save} failed (install Debian's iptables): ${String(error)}`);
      }
    })
    .join("\n");
}

/** The warnings of the plugin's status view (JSON). */
async function statusWarnings(): Promise<string[]> {
  const answer = await callPlugin(await pluginSocket(), "/Switchyard.Status", {});
  assert.equal(answer.status, 200);
  const warnings = answer.body.warnings;
  assert.ok(Array.isArray(warnings), "the status view has a warnings list");
  return warnings.map(String);
}

function setForwardPolicy(policy: "ACCEPT" | "DROP"): void {
  execFileSync("iptables", ["-w", "-P", "FORWARD", policy]);
}

describe("Docker 29's nftables firewall backend", {
  skip:
    (!isSwitchyard && "Switchyard only") ||
    (!NFTABLES_BACKEND &&
      `dockerd ${DOCKER_TAG} uses iptables: run make e2e DOCKER=29 FIREWALL_BACKEND=nftables`),
  timeout: 300_000,
}, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;

  before(async () => {
    snapshot = await startScenario(PREFIX);
    const backend = await docker(["info", "--format", "{{.FirewallBackend.Driver}}"]);
    assert.equal(backend, "nftables", "the daemon under test runs its nftables backend");
  });

  after(async () => {
    setForwardPolicy("ACCEPT");
    await endScenario(t, snapshot);
  });

  it("networks work with nothing of Switchyard's in iptables", async () => {
    const network = t.network(uniqueName(PREFIX));
    await createNetwork({ name: network, subnet: "10.231.70.0/24" });
    const one = t.container(uniqueName(PREFIX));
    const two = t.container(uniqueName(PREFIX));
    await runContainer({ name: one, network, args: ["-p", "18470:80"] });
    await runContainer({ name: two, network });
    assert.equal(await ping(one, await containerAddress(two, network)), true, "ICC works");
    assert.equal(await ping(one, "10.231.70.1"), true, "the gateway answers");
    const rules = iptablesRules();
    assert.doesNotMatch(rules, /SWITCHYARD/, "no Switchyard chain or jump in iptables");
    assert.doesNotMatch(rules, /10\.231\.70\./, "no rule for the network in iptables");
    assert.deepEqual(await statusWarnings(), [], "no warning while FORWARD accepts");
  });

  it("a FORWARD policy of DROP is reported in the log and the status view, until it is fixed", async () => {
    const logBefore = (await readFile(DOCKERD_LOG)).length;
    setForwardPolicy("DROP");
    // A network made or removed is a full rebuild, where the policy is read.
    const network = t.network(uniqueName(PREFIX));
    await createNetwork({ name: network, subnet: "10.231.71.0/24" });
    const warnings = await statusWarnings();
    assert.equal(warnings.length, 1, `one warning: ${JSON.stringify(warnings)}`);
    assert.match(warnings[0] ?? "", /iptables FORWARD policy is DROP/);
    assert.match(warnings[0] ?? "", /iptables -P FORWARD ACCEPT/);
    await waitFor("the warning in the daemon log", async () => {
      const log = (await readFile(DOCKERD_LOG)).subarray(logBefore).toString("utf8");
      return log.includes("iptables FORWARD policy is DROP");
    });

    setForwardPolicy("ACCEPT");
    await docker(["network", "rm", network]);
    assert.deepEqual(await statusWarnings(), [], "the warning goes once FORWARD accepts");
  });
});

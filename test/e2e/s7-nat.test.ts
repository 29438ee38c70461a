// S7 — outbound NAT (SCENARIOS.md): an outside host (a network namespace routed through the
// host) sees the host's address as the source, or the container's own address when the network
// has enable_ip_masquerade=false (whose replies Docker 28, and Switchyard, then drop).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { containerAddress, createNetwork, runContainer, uniqueName } from "./lib/docker.ts";
import { type HostSnapshot, host } from "./lib/host.ts";
import { createOutsideHost, type OutsideHost } from "./lib/outside.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-s7";
const LINK_PREFIX = "sye2eo7";
const SUBNET = "10.231.38.0/24";
const NO_MASQ_SUBNET = "10.231.39.0/24";
const OUTSIDE_SUBNET = "10.231.243";

describe("S7: outbound NAT", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let outside: OutsideHost | undefined;
  const network = uniqueName(PREFIX);
  const noMasqNetwork = uniqueName(PREFIX);

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    outside = await createOutsideHost(t, {
      prefix: PREFIX,
      linkPrefix: LINK_PREFIX,
      subnet24: OUTSIDE_SUBNET,
    });
    await createNetwork({ name: t.network(network), subnet: SUBNET });
    await createNetwork({
      name: t.network(noMasqNetwork),
      subnet: NO_MASQ_SUBNET,
      options: { "com.docker.network.bridge.enable_ip_masquerade": "false" },
    });
  });

  after(async () => {
    await outside?.close();
    await endScenario(t, snapshot);
  });

  it("a container reaches the outside host, which sees the host's address as source", async () => {
    assert.ok(outside);
    const container = await runContainer({ name: t.container(uniqueName(PREFIX)), network });
    assert.ok(
      await outside.pingedFrom(container),
      `cannot ping the outside host ${outside.address}`,
    );
    assert.equal(
      await outside.sourceSeenFrom(container),
      outside.hostAddress,
      "the outside host does not see the host's address as the source",
    );
  });

  it("with enable_ip_masquerade=false the outside host sees the container's address, and no reply gets back (as Docker 28)", {
    timeout: 120_000,
  }, async () => {
    assert.ok(outside);
    // Even with a way back to the container's subnet, Docker 28 (and Switchyard on every
    // release) drops packets routed to a container's own address from another interface.
    await outside.addRoute(NO_MASQ_SUBNET);
    const container = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: noMasqNetwork,
    });
    const address = await containerAddress(container, noMasqNetwork);
    // Count what reaches the outside host from the container's own address.
    await host(["ip", "netns", "exec", outside.netns, "nft", "-f", "-"], {
      input: [
        "table inet s7probe {",
        "  chain input {",
        "    type filter hook input priority -300; policy accept;",
        `    ip saddr ${address} counter`,
        "  }",
        "}",
        "",
      ].join("\n"),
    });
    assert.equal(await outside.pingedFrom(container), false, "no reply reaches the container");
    const table = await host([
      "ip",
      "netns",
      "exec",
      outside.netns,
      "nft",
      "list",
      "table",
      "inet",
      "s7probe",
    ]);
    const packets = Number(/counter packets (\d+)/.exec(table)?.[1] ?? "0");
    assert.ok(packets > 0, `nothing from ${address} reached the outside host:\n${table}`);
  });
});

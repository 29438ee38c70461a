// S5 — inter-container communication off (SCENARIOS.md): with enable_icc=false containers on
// the network cannot reach each other, but they still reach the outside host and their
// published ports still work from the host and from the outside host.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  containerAddress,
  containerGateway,
  createNetwork,
  httpGet,
  httpServerCommand,
  ping,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import type { HostSnapshot } from "./lib/host.ts";
import { createOutsideHost, type OutsideHost } from "./lib/outside.ts";
import { hostPrimaryAddress, httpGetFrom, ON_HOST, waitForHttpd } from "./lib/probe.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-s5";
const LINK_PREFIX = "sye2eo5";
const SUBNET = "10.231.35.0/24";
const OUTSIDE_SUBNET = "10.231.242";
const PORT_A = 8151;
const PORT_B = 8152;

describe("S5: inter-container communication off", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let outside: OutsideHost | undefined;
  const network = uniqueName(PREFIX);
  const tokenA = uniqueName("icc-a");
  const tokenB = uniqueName("icc-b");
  let a = "";
  let b = "";
  let primary = "";

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    outside = await createOutsideHost(t, {
      prefix: PREFIX,
      linkPrefix: LINK_PREFIX,
      subnet24: OUTSIDE_SUBNET,
    });
    primary = await hostPrimaryAddress();
    await createNetwork({
      name: t.network(network),
      subnet: SUBNET,
      options: { "com.docker.network.bridge.enable_icc": "false" },
    });
    a = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", `${PORT_A}:80`],
      cmd: httpServerCommand(tokenA),
    });
    await waitForHttpd(a, tokenA);
    b = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", `${PORT_B}:80`],
      cmd: httpServerCommand(tokenB),
    });
    await waitForHttpd(b, tokenB);
  });

  after(async () => {
    await outside?.close();
    await endScenario(t, snapshot);
  });

  it("containers on the network cannot reach each other", async () => {
    const addressA = await containerAddress(a, network);
    const addressB = await containerAddress(b, network);
    // Each is alive and attached: it reaches its gateway.
    assert.ok(await ping(a, await containerGateway(a, network)), `${a} cannot ping its gateway`);
    assert.ok(await ping(b, await containerGateway(b, network)), `${b} cannot ping its gateway`);

    assert.equal(await ping(a, addressB), false, `${a} pinged ${addressB}`);
    assert.equal(await ping(b, addressA), false, `${b} pinged ${addressA}`);
    assert.equal(await httpGet(a, addressB, 80), undefined, `${a} got HTTP from ${addressB}`);
    assert.equal(await httpGet(b, addressA, 80), undefined, `${b} got HTTP from ${addressA}`);
  });

  it("each container still reaches the outside host", async () => {
    assert.ok(outside);
    for (const container of [a, b]) {
      assert.ok(await outside.pingedFrom(container), `${container} cannot ping the outside host`);
      assert.equal(
        await outside.sourceSeenFrom(container),
        outside.hostAddress,
        `${container} gets no TCP answer from the outside host (or is not masqueraded)`,
      );
    }
  });

  it("their published ports work from the host and from the outside host", async () => {
    assert.ok(outside);
    for (const [port, token] of [
      [PORT_A, tokenA],
      [PORT_B, tokenB],
    ] as const) {
      for (const address of [primary, "127.0.0.1", outside.hostAddress]) {
        const response = await httpGetFrom(ON_HOST, address, port);
        assert.match(
          response ?? "",
          new RegExp(token),
          `host got no answer from ${address}:${port}`,
        );
      }
      const response = await outside.httpGet(outside.hostAddress, port);
      assert.match(
        response ?? "",
        new RegExp(token),
        `the outside host got no answer from ${outside.hostAddress}:${port}`,
      );
    }
  });
});

// S6 — isolation between networks (SCENARIOS.md): containers on two different networks cannot
// reach each other, unless one container is connected to both; Docker's default bridge network
// and the driver's networks are isolated from each other in both directions.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  containerAddress,
  containerGateway,
  createNetwork,
  docker,
  httpGet,
  httpServerCommand,
  ping,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import type { HostSnapshot } from "./lib/host.ts";
import { waitForHttpd } from "./lib/probe.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-s6";
const LINK_PREFIX = "sye2e6";
const SUBNET_A = "10.231.36.0/24";
const SUBNET_B = "10.231.37.0/24";

describe("S6: isolation between networks", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const networkA = uniqueName(PREFIX);
  const networkB = uniqueName(PREFIX);
  const tokenA = uniqueName("iso-a");
  const tokenB = uniqueName("iso-b");
  const tokenD = uniqueName("iso-default");
  // name → address on its own network
  let onA = "";
  let onB = "";
  let onDefault = "";
  let addressA = "";
  let addressB = "";
  let addressDefault = "";

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    await createNetwork({ name: t.network(networkA), subnet: SUBNET_A });
    await createNetwork({ name: t.network(networkB), subnet: SUBNET_B });
    onA = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: networkA,
      cmd: httpServerCommand(tokenA),
    });
    await waitForHttpd(onA, tokenA);
    onB = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: networkB,
      cmd: httpServerCommand(tokenB),
    });
    await waitForHttpd(onB, tokenB);
    onDefault = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: "bridge",
      cmd: httpServerCommand(tokenD),
    });
    await waitForHttpd(onDefault, tokenD);
    addressA = await containerAddress(onA, networkA);
    addressB = await containerAddress(onB, networkB);
    addressDefault = await containerAddress(onDefault, "bridge");

    // Every container is alive: it reaches its own gateway. Otherwise the negative checks
    // below could pass merely because a container is broken.
    for (const [container, network] of [
      [onA, networkA],
      [onB, networkB],
      [onDefault, "bridge"],
    ] as const) {
      const gateway = await containerGateway(container, network);
      assert.ok(await ping(container, gateway), `${container} cannot ping its gateway ${gateway}`);
    }
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  it("containers on two networks cannot reach each other, in either direction", async () => {
    assert.equal(await ping(onA, addressB), false, `A pinged B at ${addressB}`);
    assert.equal(await ping(onB, addressA), false, `B pinged A at ${addressA}`);
    assert.equal(await httpGet(onA, addressB, 80), undefined, "A opened a connection to B");
    assert.equal(await httpGet(onB, addressA, 80), undefined, "B opened a connection to A");
  });

  it("a container connected to both networks reaches both", async () => {
    const both = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: networkA,
    });
    await docker(["network", "connect", networkB, both]);
    assert.ok(await ping(both, addressA), `cannot ping ${addressA} on A`);
    assert.ok(await ping(both, addressB), `cannot ping ${addressB} on B`);
    assert.match((await httpGet(both, addressA, 80)) ?? "", new RegExp(tokenA));
    assert.match((await httpGet(both, addressB, 80)) ?? "", new RegExp(tokenB));
    // …and both reach it back.
    assert.ok(await ping(onA, await containerAddress(both, networkA)), "A cannot ping it");
    assert.ok(await ping(onB, await containerAddress(both, networkB)), "B cannot ping it");
  });

  it("a container on Docker's default bridge cannot reach the network's containers", async () => {
    assert.equal(await ping(onDefault, addressA), false, `default-bridge pinged ${addressA}`);
    assert.equal(
      await httpGet(onDefault, addressA, 80),
      undefined,
      `default-bridge container opened a connection to ${addressA}`,
    );
  });

  it("the network's containers cannot reach a container on Docker's default bridge", async () => {
    assert.equal(await ping(onA, addressDefault), false, `A pinged ${addressDefault}`);
    assert.equal(
      await httpGet(onA, addressDefault, 80),
      undefined,
      `A opened a connection to the default-bridge container at ${addressDefault}`,
    );
  });
});

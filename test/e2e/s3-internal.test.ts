// S3 — internal network (SCENARIOS.md): containers on it reach each other, but nothing outside
// the network (an outside host in its own network namespace), and published ports are not
// reachable. A control network without --internal shows each negative check can succeed.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  containerAddress,
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

const PREFIX = "sy-e2e-s3";
const LINK_PREFIX = "sye2eo3";
const SUBNET = "10.231.30.0/24";
const CONTROL_SUBNET = "10.231.31.0/24";
const OUTSIDE_SUBNET = "10.231.241";
const INTERNAL_PORT = 8131;
const CONTROL_PORT = 8132;

describe("S3: internal network", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let outside: OutsideHost | undefined;
  const network = uniqueName(PREFIX);
  const controlNetwork = uniqueName(PREFIX);
  const serverToken = uniqueName("internal-server");
  const controlToken = uniqueName("control-server");
  let server = "";
  let client = "";
  let control = "";
  let primary = "";

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    outside = await createOutsideHost(t, {
      prefix: PREFIX,
      linkPrefix: LINK_PREFIX,
      subnet24: OUTSIDE_SUBNET,
    });
    primary = await hostPrimaryAddress();
    await createNetwork({ name: t.network(network), subnet: SUBNET, internal: true });
    await createNetwork({ name: t.network(controlNetwork), subnet: CONTROL_SUBNET });
    server = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", `${INTERNAL_PORT}:80`],
      cmd: httpServerCommand(serverToken),
    });
    await waitForHttpd(server, serverToken);
    client = await runContainer({ name: t.container(uniqueName(PREFIX)), network });
    control = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: controlNetwork,
      args: ["-p", `${CONTROL_PORT}:80`],
      cmd: httpServerCommand(controlToken),
    });
    await waitForHttpd(control, controlToken);
  });

  after(async () => {
    await outside?.close();
    await endScenario(t, snapshot);
  });

  it("containers on the internal network reach each other", async () => {
    const serverAddress = await containerAddress(server, network);
    const clientAddress = await containerAddress(client, network);
    assert.ok(await ping(client, serverAddress), `${client} cannot ping ${serverAddress}`);
    assert.ok(await ping(server, clientAddress), `${server} cannot ping ${clientAddress}`);
    const response = await httpGet(client, serverAddress, 80);
    assert.match(response ?? "", new RegExp(serverToken), "no HTTP answer across the network");
  });

  it("a container on the internal network cannot reach the outside host", async () => {
    assert.ok(outside);
    // The control container proves the outside host answers.
    assert.ok(await outside.pingedFrom(control), "control container cannot ping the outside host");
    assert.ok(await outside.sourceSeenFrom(control), "control container gets no TCP answer");

    assert.equal(await outside.pingedFrom(client), false, "internal container pinged outside");
    assert.equal(
      await outside.sourceSeenFrom(client),
      undefined,
      "internal container opened a TCP connection to the outside host",
    );
  });

  it("a port published from the internal network is not reachable", async () => {
    assert.ok(outside);
    // Controls: the same checks reach a port published on an ordinary network.
    for (const address of [primary, outside.hostAddress]) {
      const response = await httpGetFrom(ON_HOST, address, CONTROL_PORT);
      assert.match(
        response ?? "",
        new RegExp(controlToken),
        `control port not served on ${address}`,
      );
    }
    assert.match(
      (await outside.httpGet(outside.hostAddress, CONTROL_PORT)) ?? "",
      new RegExp(controlToken),
    );

    for (const address of [primary, outside.hostAddress]) {
      assert.equal(
        await httpGetFrom(ON_HOST, address, INTERNAL_PORT),
        undefined,
        `the internal container's port answered the host on ${address}:${INTERNAL_PORT}`,
      );
    }
    assert.equal(
      await outside.httpGet(outside.hostAddress, INTERNAL_PORT),
      undefined,
      `the internal container's port answered the outside host on ${outside.hostAddress}:${INTERNAL_PORT}`,
    );
  });
});

// S2 — published ports (`-p`) on a user-defined network (SCENARIOS.md): reachable from the
// host (its address and 127.0.0.1), from an outside host (a network namespace routed through
// the host) and from a container on another network; loopback-only bindings, ephemeral ports,
// ranges and UDP; clashes fail naming the port; the port is revoked with the container.
// Docker does not show plugin drivers' ports in `docker port`, so tests use explicit ports
// and find an ephemeral one in the plugin's log.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import {
  createNetwork,
  docker,
  httpGet,
  httpServerCommand,
  runContainer,
  runContainerMayFail,
  uniqueName,
} from "./lib/docker.ts";
import type { HostSnapshot } from "./lib/host.ts";
import { createOutsideHost, type OutsideHost } from "./lib/outside.ts";
import {
  type BackgroundServer,
  hostPrimaryAddress,
  httpGetFrom,
  ON_HOST,
  publishedHostPort,
  startUdpEchoServer,
  udpRequest,
  waitForHttpd,
} from "./lib/probe.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-s2p";
const LINK_PREFIX = "sye2eop";
const SUBNET = "10.231.20.0/24";
const OUTSIDE_SUBNET = "10.231.240";
const PORT = 8081;
const LOOPBACK_PORT = 8082;
const RANGE_FIRST = 9000;
const RANGE_LAST = 9005;
const UDP_PORT = 5353;

describe("S2: published ports", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let outside: OutsideHost | undefined;
  const servers: BackgroundServer[] = [];
  const network = uniqueName(PREFIX);
  const token = uniqueName("publish");
  let web = "";
  let primary = "";

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    outside = await createOutsideHost(t, {
      prefix: PREFIX,
      linkPrefix: LINK_PREFIX,
      subnet24: OUTSIDE_SUBNET,
    });
    primary = await hostPrimaryAddress();
    await createNetwork({ name: t.network(network), subnet: SUBNET });
    web = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", `${PORT}:80`],
      cmd: httpServerCommand(token),
    });
    await waitForHttpd(web, token);
  });

  after(async () => {
    for (const server of servers) await server.close();
    await outside?.close();
    await endScenario(t, snapshot);
  });

  it(`-p ${PORT}:80 is reachable from the host's address and 127.0.0.1`, async () => {
    assert.ok(outside);
    for (const address of [primary, "127.0.0.1", outside.hostAddress]) {
      const response = await httpGetFrom(ON_HOST, address, PORT);
      assert.match(response ?? "", new RegExp(token), `no answer on ${address}:${PORT}`);
    }
  });

  it(`-p ${PORT}:80 is reachable from the outside host`, async () => {
    assert.ok(outside);
    const response = await outside.httpGet(outside.hostAddress, PORT);
    assert.match(response ?? "", new RegExp(token), `no answer on ${outside.hostAddress}:${PORT}`);
  });

  it(`-p ${PORT}:80 is reachable from a container on Docker's default bridge`, async () => {
    const other = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: "bridge",
    });
    const response = await httpGet(other, primary, PORT);
    assert.match(response ?? "", new RegExp(token), `no answer on ${primary}:${PORT}`);
  });

  it(`-p 127.0.0.1:${LOOPBACK_PORT}:80 answers on 127.0.0.1 only`, async () => {
    assert.ok(outside);
    const loopToken = uniqueName("loopback");
    const server = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", `127.0.0.1:${LOOPBACK_PORT}:80`],
      cmd: httpServerCommand(loopToken),
    });
    await waitForHttpd(server, loopToken);
    const response = await httpGetFrom(ON_HOST, "127.0.0.1", LOOPBACK_PORT);
    assert.match(response ?? "", new RegExp(loopToken), `no answer on 127.0.0.1:${LOOPBACK_PORT}`);
    assert.equal(
      await outside.httpGet(outside.hostAddress, LOOPBACK_PORT),
      undefined,
      `the outside host got an answer on ${outside.hostAddress}:${LOOPBACK_PORT}`,
    );
    assert.equal(
      await httpGetFrom(ON_HOST, primary, LOOPBACK_PORT),
      undefined,
      `the host got an answer on ${primary}:${LOOPBACK_PORT}`,
    );
  });

  it("-p 80 publishes on a free port of the kernel's ephemeral range", async () => {
    // Both Switchyard and dockerd 20.10's own bridge driver take the kernel's
    // ip_local_port_range, as Docker's port allocator does.
    const [first, last] = (await readFile("/proc/sys/net/ipv4/ip_local_port_range", "utf8"))
      .trim()
      .split(/\s+/)
      .map(Number);
    const ephemeralToken = uniqueName("ephemeral");
    const container = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", "80"],
      cmd: httpServerCommand(ephemeralToken),
    });
    await waitForHttpd(container, ephemeralToken);
    const port = await publishedHostPort(container, network, 80);
    assert.ok(port !== undefined, "no published port found (docker port, plugin log)");
    assert.ok(
      port >= (first ?? 0) && port <= (last ?? 0),
      `port ${port} is outside the ephemeral range ${first}-${last}`,
    );
    const response = await httpGetFrom(ON_HOST, primary, port);
    assert.match(response ?? "", new RegExp(ephemeralToken), `no answer on ${primary}:${port}`);
  });

  it(`-p ${RANGE_FIRST}-${RANGE_LAST}:80 takes a free port of the range per container`, async () => {
    const tokens = [uniqueName("range"), uniqueName("range")];
    for (const rangeToken of tokens) {
      const server = await runContainer({
        name: t.container(uniqueName(PREFIX)),
        network,
        args: ["-p", `${RANGE_FIRST}-${RANGE_LAST}:80`],
        cmd: httpServerCommand(rangeToken),
      });
      await waitForHttpd(server, rangeToken);
    }
    const served = new Map<string, number[]>();
    for (let port = RANGE_FIRST; port <= RANGE_LAST; port++) {
      const response = (await httpGetFrom(ON_HOST, primary, port)) ?? "";
      for (const rangeToken of tokens) {
        if (response.includes(rangeToken))
          served.set(rangeToken, [...(served.get(rangeToken) ?? []), port]);
      }
    }
    for (const rangeToken of tokens) {
      assert.equal(
        served.get(rangeToken)?.length,
        1,
        `container ${rangeToken} is served on ports [${served.get(rangeToken) ?? []}] of the range`,
      );
    }
    assert.notDeepEqual(served.get(tokens[0] ?? ""), served.get(tokens[1] ?? ""));
  });

  it(`-p ${UDP_PORT}:53/udp relays UDP from the host and the outside host`, async () => {
    assert.ok(outside);
    const tag = uniqueName("udp");
    const container = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", `${UDP_PORT}:53/udp`],
    });
    // The image's busybox nc has no UDP: serve from the container's namespace with node.
    servers.push(await startUdpEchoServer({ kind: "container", container }, 53, tag));
    for (const address of [primary, "127.0.0.1"]) {
      assert.equal(
        await udpRequest(ON_HOST, address, UDP_PORT, "hello"),
        `${tag}:hello`,
        `no UDP answer on ${address}:${UDP_PORT}`,
      );
    }
    assert.equal(
      await outside.udp(outside.hostAddress, UDP_PORT, "outside"),
      `${tag}:outside`,
      `the outside host got no UDP answer on ${outside.hostAddress}:${UDP_PORT}`,
    );
  });

  it(`a second container asking for ${PORT} fails with an error naming the port`, async () => {
    const outcome = await runContainerMayFail({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", `${PORT}:80`],
      cmd: httpServerCommand("second"),
    });
    assert.notEqual(outcome.exitCode, 0, "a second container published the same port");
    assert.match(
      outcome.stderr,
      new RegExp(String(PORT)),
      `the error does not name the port: ${outcome.stderr}`,
    );
    // The first container still holds it.
    assert.match((await httpGetFrom(ON_HOST, primary, PORT)) ?? "", new RegExp(token));
  });

  it("after docker rm -f the port answers no more, and can be published again", async () => {
    assert.ok(outside);
    await docker(["rm", "-f", web]);
    for (const address of [primary, "127.0.0.1"]) {
      assert.equal(
        await httpGetFrom(ON_HOST, address, PORT),
        undefined,
        `${address}:${PORT} still answers`,
      );
    }
    assert.equal(
      await outside.httpGet(outside.hostAddress, PORT),
      undefined,
      `${outside.hostAddress}:${PORT} still answers the outside host`,
    );

    const againToken = uniqueName("again");
    const server = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", `${PORT}:80`],
      cmd: httpServerCommand(againToken),
    });
    await waitForHttpd(server, againToken);
    assert.match((await httpGetFrom(ON_HOST, primary, PORT)) ?? "", new RegExp(againToken));
  });

  it("a stopped container's port answers no more", async () => {
    const stopToken = uniqueName("stop");
    const container = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      args: ["-p", "8083:80"],
      cmd: httpServerCommand(stopToken),
    });
    await waitForHttpd(container, stopToken);
    assert.match((await httpGetFrom(ON_HOST, primary, 8083)) ?? "", new RegExp(stopToken));
    await docker(["stop", "-t", "1", container]);
    assert.equal(await httpGetFrom(ON_HOST, primary, 8083), undefined, "8083 still answers");
    assert.equal(await httpGetFrom(ON_HOST, "127.0.0.1", 8083), undefined, "8083 still answers");
  });
});

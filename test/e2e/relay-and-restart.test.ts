// Field defects against real dockerd:
// - an idle TCP client of a port published on 127.0.0.1 made `docker stop` hang (> 30 s), and
//   every `docker run` on that network with it, until the client went away: the relay's close
//   waited for every relayed connection, inside the state queue and the ports lock;
// - a container removed while the plugin was disabled kept its published port held for ever,
//   so the next container could not publish it.

import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { isSwitchyard, networkDriver, TEST_IMAGE } from "./lib/config.ts";
import {
  createNetwork,
  docker,
  dockerMayFail,
  httpServerCommand,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import type { HostSnapshot } from "./lib/host.ts";
import { httpGetFrom, ON_HOST, waitForHttpd } from "./lib/probe.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-rr";
const LINK_PREFIX = "sye2err";
const IDLE_PORT = 19000;
const REUSED_PORT = 19001;

/** Milliseconds a promise took. */
async function timed(work: Promise<unknown>): Promise<number> {
  const started = Date.now();
  await work;
  return Date.now() - started;
}

/**
 * An idle TCP client: connects, sends nothing, and keeps its own side open after the other
 * side ends (as keep-alive clients do), reporting when the connection is really closed.
 */
function idleClient(port: number): Promise<{ socket: Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
    const closed = new Promise<void>((done) => {
      socket.once("end", () => done());
      socket.once("close", () => done());
    });
    socket.on("error", () => undefined);
    socket.once("connect", () => resolve({ socket, closed }));
    socket.once("error", reject);
  });
}

describe("published ports under real use", { skip: !isSwitchyard && "Switchyard only" }, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const network = uniqueName(PREFIX);
  const clients: Socket[] = [];

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);
    await createNetwork({ name: t.network(network), subnet: "10.231.30.0/24" });
  });

  after(async () => {
    for (const client of clients) client.destroy();
    await endScenario(t, snapshot);
  });

  it("an idle client of a 127.0.0.1 port holds up neither docker stop nor docker run", {
    timeout: 120_000,
  }, async () => {
    const token = uniqueName("idle");
    const web = t.container(uniqueName(PREFIX));
    await runContainer({
      name: web,
      network,
      args: ["-p", `127.0.0.1:${IDLE_PORT}:80`],
      cmd: httpServerCommand(token),
    });
    await waitForHttpd(web, token);
    const client = await idleClient(IDLE_PORT);
    clients.push(client.socket);
    // Bounded: on the defect these hung until the client left, so a timeout fails the test.
    const stopMs = await timed(docker(["stop", "-t", "1", web], { timeoutMs: 20_000 }));
    assert.ok(stopMs < 5_000, `docker stop took ${stopMs} ms with an idle client connected`);
    const runMs = await timed(
      docker(["run", "--rm", "--network", network, TEST_IMAGE, "true"], { timeoutMs: 20_000 }),
    );
    assert.ok(runMs < 5_000, `docker run on the network took ${runMs} ms`);
    const closed = await Promise.race([
      client.closed.then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000)),
    ]);
    assert.equal(closed, true, "the relayed connection ended with the port");
  });

  it("a container removed while the plugin was disabled does not keep its port", {
    timeout: 180_000,
  }, async () => {
    const first = t.container(uniqueName(PREFIX));
    await runContainer({
      name: first,
      network,
      args: ["-p", `${REUSED_PORT}:80`],
      cmd: httpServerCommand("first"),
    });
    await docker(["plugin", "disable", "-f", networkDriver]);
    try {
      // Docker cannot tell the disabled plugin; the container's namespace, and so its veth, go.
      await dockerMayFail(["rm", "-f", first]);
    } finally {
      await docker(["plugin", "enable", networkDriver]);
    }
    const token = uniqueName("second");
    const second = t.container(uniqueName(PREFIX));
    await runContainer({
      name: second,
      network,
      args: ["-p", `${REUSED_PORT}:80`],
      cmd: httpServerCommand(token),
    });
    await waitForHttpd(second, token);
    const page = await httpGetFrom(ON_HOST, "127.0.0.1", REUSED_PORT);
    assert.match(page ?? "", new RegExp(token));
  });
});

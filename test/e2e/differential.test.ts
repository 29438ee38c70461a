// Differential test: one scenario matrix (reachability, NAT, published ports, internal, ICC)
// measured twice — on networks of Docker's built-in bridge driver (default IPAM) and on
// Switchyard networks — and the two matrices must be equal. Switchyard's promise is to behave
// like the built-in bridge; this checks that promise against the real thing on this daemon.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  containerAddress,
  containerGateway,
  docker,
  dockerMajor,
  exec,
  httpGet,
  httpServerCommand,
  ping,
  requireDocker,
  requirePlugin,
  requireRoot,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import { type HostSnapshot, hostPing, snapshotHost } from "./lib/host.ts";
import { BUILT_IN, createExtendedNetwork, type DriverPair, SWITCHYARD } from "./lib/networks.ts";
import { createOutsideHost, type OutsideHost, WHOAMI_PORT } from "./lib/outside.ts";
import {
  type BackgroundServer,
  hostPrimaryAddress,
  httpGetFrom,
  ON_HOST,
  type Place,
  startWhoamiServer,
  tcpRequest,
  waitForHttpd,
} from "./lib/probe.ts";
import { endScenario } from "./lib/scenario.ts";
import { removeLeftovers, type Tracker, track } from "./lib/track.ts";

const PREFIX = "sy-e2e-diff";
const LINK_PREFIX = "sye2eod";
const OUTSIDE_SUBNET = "10.231.244";

/** What one run uses: its drivers, a /24 per network and three host ports. */
interface RunPlan {
  label: string;
  drivers: DriverPair;
  /** Third octets of 10.231.X.0/24 for networks A, B, internal, icc-off, no-masquerade. */
  octets: { a: number; b: number; internal: number; icc: number; noMasq: number };
  /** Host ports: a1's web server, a1's who-am-I server, i1's and x1's web servers. */
  ports: { a: number; whoami: number; internal: number; icc: number };
}

const PLANS: Record<"bridge" | "switchyard", RunPlan> = {
  bridge: {
    label: "built-in bridge",
    drivers: BUILT_IN,
    octets: { a: 50, b: 51, internal: 52, icc: 53, noMasq: 54 },
    ports: { a: 8191, whoami: 8197, internal: 8192, icc: 8193 },
  },
  switchyard: {
    label: "Switchyard",
    drivers: SWITCHYARD,
    octets: { a: 55, b: 56, internal: 57, icc: 58, noMasq: 59 },
    ports: { a: 8194, whoami: 8198, internal: 8195, icc: 8196 },
  },
};

type Cell = boolean | string;
type Matrix = Record<string, Cell>;

const subnetOf = (octet: number) => `10.231.${octet}.0/24`;

/** Runs `tasks` with at most `limit` at a time, keeping their order in the result. */
async function pool<T>(tasks: (() => Promise<T>)[], limit = 6): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const index = next++;
      const task = tasks[index];
      if (task) results[index] = await task();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

/** True when the answer of an HTTP GET carries `token`. */
const serves = (response: string | undefined, token: string) => response?.includes(token) === true;

/** Builds one driver's networks and containers, measures every case, and removes it all. */
async function measure(
  plan: RunPlan,
  outside: OutsideHost,
  primary: string,
  outer: Tracker,
): Promise<Matrix> {
  const t = track();
  const servers: BackgroundServer[] = [];
  try {
    const name = () => t.container(outer.container(uniqueName(PREFIX)));
    const net = async (key: keyof RunPlan["octets"], extra: object = {}) => {
      const network = t.network(outer.network(uniqueName(PREFIX)));
      await createExtendedNetwork({
        name: network,
        subnet: subnetOf(plan.octets[key]),
        drivers: plan.drivers,
        ...extra,
      });
      return network;
    };
    const A = await net("a");
    const B = await net("b");
    const I = await net("internal", { internal: true });
    const X = await net("icc", { options: { "com.docker.network.bridge.enable_icc": "false" } });
    const N = await net("noMasq", {
      options: { "com.docker.network.bridge.enable_ip_masquerade": "false" },
    });
    // Without NAT the outside host needs a route back; the routed-in check needs one to A.
    await outside.addRoute(subnetOf(plan.octets.noMasq));
    await outside.addRoute(subnetOf(plan.octets.a));

    const token = (what: string) => `${what}-${plan.drivers.driver.replace(/\W/g, "")}`;
    const web = async (network: string, what: string, port?: number) => {
      const container = await runContainer({
        name: name(),
        network,
        ...(port === undefined ? {} : { args: ["-p", `${port}:80`] }),
        cmd: httpServerCommand(token(what)),
      });
      await waitForHttpd(container, token(what));
      return container;
    };
    const a1 = await runContainer({
      name: name(),
      network: A,
      args: ["-p", `${plan.ports.a}:80`, "-p", `${plan.ports.whoami}:${WHOAMI_PORT}`],
      cmd: httpServerCommand(token("a1")),
    });
    await waitForHttpd(a1, token("a1"));
    // Tells each client which source address a1 sees for it through the published port.
    servers.push(await startWhoamiServer({ kind: "container", container: a1 }, WHOAMI_PORT));
    const a2 = await web(A, "a2");
    const b1 = await web(B, "b1");
    const ab = await runContainer({ name: name(), network: A });
    await docker(["network", "connect", B, ab]);
    const d1 = await web("bridge", "d1");
    const i1 = await web(I, "i1", plan.ports.internal);
    const i2 = await web(I, "i2");
    const x1 = await web(X, "x1", plan.ports.icc);
    const x2 = await web(X, "x2");
    const n1 = await runContainer({ name: name(), network: N });

    const addr = {
      a1: await containerAddress(a1, A),
      a2: await containerAddress(a2, A),
      b1: await containerAddress(b1, B),
      d1: await containerAddress(d1, "bridge"),
      i1: await containerAddress(i1, I),
      i2: await containerAddress(i2, I),
      x1: await containerAddress(x1, X),
      x2: await containerAddress(x2, X),
      n1: await containerAddress(n1, N),
    };
    const gatewayOf = {
      a1: await containerGateway(a1, A),
      i1: `10.231.${plan.octets.internal}.1`,
      x1: await containerGateway(x1, X),
    };

    /** How a1 sees a client at `from` that reached it through its published who-am-I port. */
    const seenByA1 = async (from: Place, address: string) => {
      const response = await tcpRequest(from, address, plan.ports.whoami);
      const seen = response?.trim() ?? "";
      if (seen === "") return "no connection";
      const known: Record<string, string> = {
        [gatewayOf.a1]: "A's gateway",
        [primary]: "host primary address",
        [outside.hostAddress]: "host veth address",
        [outside.address]: "outside host's address",
        [addr.a2]: "client's address (a2)",
        [addr.b1]: "client's address (b1)",
        [addr.d1]: "client's address (default bridge)",
      };
      return known[seen] ?? `other address ${seen}`;
    };
    const inside = (container: string): Place => ({ kind: "container", container });
    const source = async (container: string, own: string): Promise<string> => {
      const seen = await outside.sourceSeenFrom(container);
      if (seen === undefined) return "no connection";
      if (seen === outside.hostAddress) return "host address";
      if (seen === own) return "container address";
      return `other address ${seen}`;
    };
    const hasDefaultRoute = async (container: string) =>
      /^default /m.test(await exec(container, ["ip", "-4", "route"]));
    const published =
      (place: "host" | string, address: string, port: number, what: string) => async () =>
        serves(
          place === "host"
            ? await httpGetFrom(ON_HOST, address, port)
            : await httpGet(place, address, port),
          token(what),
        );

    const cases: [string, () => Promise<Cell>][] = [
      // One network
      ["same network: ping", () => ping(a1, addr.a2)],
      ["same network: tcp", async () => serves(await httpGet(a1, addr.a2, 80), token("a2"))],
      ["same network: ping by name", () => ping(a1, a2)],
      ["container → its gateway: ping", () => ping(a1, gatewayOf.a1)],
      ["container → host primary address: ping", () => ping(a1, primary)],
      ["host → container: ping", () => hostPing(addr.a1)],
      [
        "host → container: tcp",
        async () => serves(await httpGetFrom(ON_HOST, addr.a1, 80), token("a1")),
      ],
      // Two networks of the driver under test
      ["A → B: ping", () => ping(a1, addr.b1)],
      ["B → A: ping", () => ping(b1, addr.a1)],
      ["A → B: tcp", async () => serves(await httpGet(a1, addr.b1, 80), token("b1"))],
      ["B → A: tcp", async () => serves(await httpGet(b1, addr.a1, 80), token("a1"))],
      ["container on A and B → A: ping", () => ping(ab, addr.a1)],
      ["container on A and B → B: ping", () => ping(ab, addr.b1)],
      // Docker's default bridge network
      ["default bridge → A: ping", () => ping(d1, addr.a1)],
      ["A → default bridge: ping", () => ping(a1, addr.d1)],
      ["default bridge → A: tcp", async () => serves(await httpGet(d1, addr.a1, 80), token("a1"))],
      ["A → default bridge: tcp", async () => serves(await httpGet(a1, addr.d1, 80), token("d1"))],
      // The outside host
      ["A → outside: ping", () => outside.pingedFrom(a1)],
      ["A → outside: source seen", () => source(a1, addr.a1)],
      [
        "outside → A container, routed to its address, on a port it publishes: tcp",
        async () => serves(await outside.httpGet(addr.a1, 80), token("a1")),
      ],
      [
        "outside → A container, routed to its address, on a port it does not publish: tcp",
        async () => serves(await outside.httpGet(addr.a2, 80), token("a2")),
      ],
      ["no masquerade → outside: ping", () => outside.pingedFrom(n1)],
      ["no masquerade → outside: source seen", () => source(n1, addr.n1)],
      // A port published by a1
      ["published: host via primary address", published("host", primary, plan.ports.a, "a1")],
      ["published: host via 127.0.0.1", published("host", "127.0.0.1", plan.ports.a, "a1")],
      [
        "published: host via its veth address",
        published("host", outside.hostAddress, plan.ports.a, "a1"),
      ],
      [
        "published: outside via host address",
        async () => serves(await outside.httpGet(outside.hostAddress, plan.ports.a), token("a1")),
      ],
      ["published: same-network container via primary", published(a2, primary, plan.ports.a, "a1")],
      ["published: the container itself via primary", published(a1, primary, plan.ports.a, "a1")],
      ["published: B container via primary", published(b1, primary, plan.ports.a, "a1")],
      [
        "published: default-bridge container via primary",
        published(d1, primary, plan.ports.a, "a1"),
      ],
      ["published, source a1 sees: host via primary", () => seenByA1(ON_HOST, primary)],
      ["published, source a1 sees: host via 127.0.0.1", () => seenByA1(ON_HOST, "127.0.0.1")],
      [
        "published, source a1 sees: outside via host address",
        () => seenByA1(outside.place, outside.hostAddress),
      ],
      ["published, source a1 sees: same-network container", () => seenByA1(inside(a2), primary)],
      ["published, source a1 sees: B container", () => seenByA1(inside(b1), primary)],
      ["published, source a1 sees: default-bridge container", () => seenByA1(inside(d1), primary)],
      // Internal network
      ["internal: same network ping", () => ping(i1, addr.i2)],
      [
        "internal: same network tcp",
        async () => serves(await httpGet(i1, addr.i2, 80), token("i2")),
      ],
      ["internal: container → gateway address: ping", () => ping(i1, gatewayOf.i1)],
      ["internal: container has an IPv4 default route", () => hasDefaultRoute(i1)],
      ["internal: host → container: ping", () => hostPing(addr.i1)],
      ["internal → outside: ping", () => outside.pingedFrom(i1)],
      ["internal → outside: source seen", () => source(i1, addr.i1)],
      ["internal → A: ping", () => ping(i1, addr.a1)],
      ["A → internal: ping", () => ping(a1, addr.i1)],
      [
        "internal published: host via primary",
        published("host", primary, plan.ports.internal, "i1"),
      ],
      [
        "internal published: host via 127.0.0.1",
        published("host", "127.0.0.1", plan.ports.internal, "i1"),
      ],
      [
        "internal published: outside via host address",
        async () =>
          serves(await outside.httpGet(outside.hostAddress, plan.ports.internal), token("i1")),
      ],
      // ICC off
      ["icc off: ping peer", () => ping(x1, addr.x2)],
      ["icc off: tcp peer", async () => serves(await httpGet(x1, addr.x2, 80), token("x2"))],
      ["icc off: container → gateway: ping", () => ping(x1, gatewayOf.x1)],
      ["icc off: host → container: ping", () => hostPing(addr.x1)],
      ["icc off → outside: ping", () => outside.pingedFrom(x1)],
      ["icc off → outside: source seen", () => source(x1, addr.x1)],
      ["icc off published: host via primary", published("host", primary, plan.ports.icc, "x1")],
      [
        "icc off published: host via 127.0.0.1",
        published("host", "127.0.0.1", plan.ports.icc, "x1"),
      ],
      [
        "icc off published: outside via host address",
        async () => serves(await outside.httpGet(outside.hostAddress, plan.ports.icc), token("x1")),
      ],
      ["icc off published: peer via primary", published(x2, primary, plan.ports.icc, "x1")],
      [
        "icc off published: default-bridge container via primary",
        published(d1, primary, plan.ports.icc, "x1"),
      ],
    ];
    const values = await pool(cases.map(([, run]) => run));
    return Object.fromEntries(cases.map(([key], index) => [key, values[index] ?? "not measured"]));
  } finally {
    for (const server of servers) await server.close();
    await t.cleanup();
  }
}

/**
 * Where Switchyard differs from the built-in bridge on purpose, by daemon release. Switchyard
 * adopts Docker 28's protections on every release, so on older daemons (whose bridge was
 * laxer) these cells differ; on 28, none should. Any other difference fails the test, and so
 * does a known one that no longer shows (the list must stay true).
 */
export function knownDifferences(
  major: number,
): Record<string, { switchyard: Cell; builtIn: Cell }> {
  const known: Record<string, { switchyard: Cell; builtIn: Cell }> = {};
  if (major < 28) {
    // Docker 28 drops packets routed to a container's own address from another interface:
    // no direct access, not even to a published port, and no replies to unmasqueraded traffic.
    known["outside → A container, routed to its address, on a port it publishes: tcp"] = {
      switchyard: false,
      builtIn: true,
    };
    known["no masquerade → outside: ping"] = { switchyard: false, builtIn: true };
    known["no masquerade → outside: source seen"] = {
      switchyard: "no connection",
      builtIn: "container address",
    };
  }
  // Docker 26 and later give internal networks no default route; 20.10 did.
  if (major < 26) {
    known["internal: container has an IPv4 default route"] = { switchyard: false, builtIn: true };
  }
  return known;
}

/** The cells where two matrices differ, as readable lines. */
function differences(actual: Matrix, expected: Matrix): string[] {
  const keys = [...new Set([...Object.keys(expected), ...Object.keys(actual)])];
  return keys
    .filter((key) => actual[key] !== expected[key])
    .map((key) => `${key}: Switchyard ${String(actual[key])}, built-in ${String(expected[key])}`);
}

describe("differential: Switchyard behaves like Docker's built-in bridge driver", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let outside: OutsideHost | undefined;
  let primary = "";
  let bridgeMatrix: Matrix | undefined;
  let switchyardMatrix: Matrix | undefined;

  before(async () => {
    requireRoot();
    await requireDocker();
    await requirePlugin("switchyard:latest");
    await removeLeftovers(PREFIX, LINK_PREFIX);
    snapshot = await snapshotHost();

    outside = await createOutsideHost(t, {
      prefix: PREFIX,
      linkPrefix: LINK_PREFIX,
      subnet24: OUTSIDE_SUBNET,
    });
    primary = await hostPrimaryAddress();
  });

  after(async () => {
    await outside?.close();
    await endScenario(t, snapshot);
  });

  it("measures the matrix on built-in bridge networks", async (context) => {
    assert.ok(outside);
    bridgeMatrix = await measure(PLANS.bridge, outside, primary, t);
    context.diagnostic(`built-in bridge: ${JSON.stringify(bridgeMatrix, null, 1)}`);
  });

  it("measures the matrix on Switchyard networks", async (context) => {
    assert.ok(outside);
    switchyardMatrix = await measure(PLANS.switchyard, outside, primary, t);
    context.diagnostic(`Switchyard: ${JSON.stringify(switchyardMatrix, null, 1)}`);
  });

  it("the two matrices are equal but for the known differences of this release", async () => {
    assert.ok(bridgeMatrix, "the built-in bridge matrix was not measured");
    assert.ok(switchyardMatrix, "the Switchyard matrix was not measured");
    const major = await dockerMajor();
    const expected: Matrix = { ...bridgeMatrix };
    for (const [key, cells] of Object.entries(knownDifferences(major))) {
      assert.equal(
        bridgeMatrix[key],
        cells.builtIn,
        `known difference "${key}" on Docker ${major}: the built-in bridge no longer gives ${String(cells.builtIn)}`,
      );
      expected[key] = cells.switchyard;
    }
    assert.deepEqual(
      switchyardMatrix,
      expected,
      `Switchyard on Docker ${major} differs from the built-in bridge driver (beyond the known differences) in:\n${differences(switchyardMatrix, expected).join("\n")}`,
    );
  });
});

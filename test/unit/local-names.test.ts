// Which names this host publishes for its containers on multi-host networks: derived again
// from the endpoints (names Docker 29 sent with RequestAddress) and, when the user granted
// it, the Docker API (aliases, renames) — the whole set handed to the cluster every time.

import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { pino } from "pino";
import type { NameRecord } from "../../src/cluster/published-names.ts";
import type { DockerApi } from "../../src/discovery/docker-api.ts";
import {
  type LocalEndpoint,
  LocalNames,
  type NameCluster,
} from "../../src/discovery/local-names.ts";
import { FakeDocker } from "../support/fake-docker.ts";

const TIMEOUT = { timeout: 10_000 };
const silent = pino({ level: "silent" });

/** The cluster side: what was last set per network. */
class RecordingCluster implements NameCluster {
  readonly joined = new Set<number>([4242, 4343]);
  readonly names = new Map<number, ReadonlyMap<string, NameRecord>>();
  isJoined(vni: number): boolean {
    return this.joined.has(vni);
  }
  setLocalNames(vni: number, records: ReadonlyMap<string, NameRecord>): void {
    this.names.set(vni, new Map(records));
  }
  of(vni: number): Record<string, string[]> {
    return Object.fromEntries(
      [...(this.names.get(vni) ?? new Map<string, NameRecord>())].map(([id, record]) => [
        id,
        record.names,
      ]),
    );
  }
}

const running: LocalNames[] = [];
afterEach(() => {
  for (const names of running.splice(0)) names.stop();
});

function publisher(
  cluster: NameCluster,
  docker: DockerApi | undefined,
  networks: Map<string, { vni: number; endpoints: LocalEndpoint[] }>,
): LocalNames {
  const names = new LocalNames({
    docker,
    cluster,
    networks: () => [...networks].map(([networkId, network]) => ({ networkId, ...network })),
    logger: silent,
    resyncMs: 60_000,
  });
  running.push(names);
  return names;
}

function container(name: string, networkId: string, endpointId: string, aliases: string[] = []) {
  return {
    Name: `/${name}`,
    NetworkSettings: {
      Networks: { net: { NetworkID: networkId, EndpointID: endpointId, Aliases: aliases } },
    },
  };
}

describe("names this host publishes", () => {
  it("without the Docker API: the names Docker 29 sent, as endpoints come and go", TIMEOUT, () => {
    const cluster = new RecordingCluster();
    const endpoints: LocalEndpoint[] = [
      { endpointId: "e1", ipv4: "10.60.0.5", name: "Web1" },
      { endpointId: "e2", ipv4: "10.60.0.6" },
      { endpointId: "e3", name: "six-only" },
    ];
    const networks = new Map([["n1", { vni: 4242, endpoints }]]);
    const names = publisher(cluster, undefined, networks);
    names.start();
    assert.deepEqual(cluster.of(4242), { e1: ["web1"] }, "no name, no IPv4: nothing");
    endpoints.push({ endpointId: "e4", ipv4: "10.60.0.7", name: "web2" });
    names.refresh();
    assert.deepEqual(cluster.of(4242), { e1: ["web1"], e4: ["web2"] });
    endpoints.splice(0, 1);
    names.refresh();
    assert.deepEqual(cluster.of(4242), { e4: ["web2"] }, "a removed endpoint's name goes");
  });

  it("a network not joined (yet) gets nothing; once joined, all of it", TIMEOUT, () => {
    const cluster = new RecordingCluster();
    cluster.joined.delete(4343);
    const networks = new Map([
      ["n2", { vni: 4343, endpoints: [{ endpointId: "e1", ipv4: "10.61.0.5", name: "db" }] }],
    ]);
    const names = publisher(cluster, undefined, networks);
    names.refresh();
    assert.equal(cluster.names.has(4343), false);
    cluster.joined.add(4343);
    names.refresh();
    assert.deepEqual(cluster.of(4343), { e1: ["db"] });
  });

  it(
    "with the Docker API: aliases, a rename missed as an event, and a 404 network that stops no other",
    TIMEOUT,
    async () => {
      const cluster = new RecordingCluster();
      const docker = new FakeDocker();
      const networks = new Map([
        ["gone", { vni: 4343, endpoints: [{ endpointId: "g1", ipv4: "10.61.0.5", name: "lost" }] }],
        ["n1", { vni: 4242, endpoints: [{ endpointId: "e1", ipv4: "10.60.0.5", name: "web1" }] }],
      ]);
      docker.missing.add("gone");
      docker.networks.set("n1", { c1: { EndpointID: "e1", Name: "web1" } });
      docker.containers.set("c1", container("web1", "n1", "e1", ["front"]));
      const names = publisher(cluster, docker, networks);
      await names.resync();
      assert.deepEqual(cluster.of(4242), { e1: ["web1", "front"] });
      assert.deepEqual(cluster.of(4343), { g1: ["lost"] }, "the name from the request stays");

      // docker rename web1 api, while the event stream was down: the network lists the new name.
      docker.networks.set("n1", { c1: { EndpointID: "e1", Name: "api" } });
      docker.containers.set("c1", container("api", "n1", "e1", ["front"]));
      const endpoint = networks.get("n1")?.endpoints[0];
      assert.ok(endpoint);
      await names.resync();
      assert.deepEqual(cluster.of(4242), { e1: ["api", "front"] }, "the old name goes");
    },
  );

  it("a connect event publishes the container's aliases at once", TIMEOUT, async () => {
    const cluster = new RecordingCluster();
    const docker = new FakeDocker();
    const endpoints: LocalEndpoint[] = [];
    const networks = new Map([["n1", { vni: 4242, endpoints }]]);
    const names = publisher(cluster, docker, networks);
    names.start();
    endpoints.push({ endpointId: "e9", ipv4: "10.60.0.9" });
    docker.containers.set("c9", container("svc-1", "n1", "e9", ["svc"]));
    docker.emit({
      Type: "network",
      Action: "connect",
      Actor: { ID: "n1", Attributes: { container: "c9" } },
    });
    const deadline = Date.now() + 5_000;
    while (cluster.of(4242).e9 === undefined && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(cluster.of(4242), { e9: ["svc-1", "svc"] });
  });
});

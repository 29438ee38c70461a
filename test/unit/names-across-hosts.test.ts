import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { ClusterService } from "../../src/cluster/cluster.ts";
import {
  type PublishedName,
  parsePublishedName,
  publishableNames,
} from "../../src/cluster/published-names.ts";
import { LocalNames } from "../../src/discovery/local-names.ts";
import { localNetworks } from "../../src/discovery/name-service.ts";
import { NameTable } from "../../src/discovery/name-table.ts";
import { answerQuestion, networksOfClient } from "../../src/discovery/resolver.ts";
import { RecordType } from "../../src/dns/message.ts";
import { emptyState, type StateDocument } from "../../src/state/model.ts";
import { FakeDocker } from "../support/fake-docker.ts";
import { buildTestApp } from "../support/fakes.ts";
import { MemoryKeyValueStore } from "../support/memory-kv.ts";

/**
 * Names across hosts: what a host publishes in etcd, what the others' watches make
 * of it, what the resolver answers to whom, and what the Docker-side publisher does with
 * events and resyncs, on an in-memory key-value store and a fake Docker API.
 */
const TIMEOUT = { timeout: 10_000 };
const running: { stop(): void }[] = [];
const silent = pino({ level: "silent" });

afterEach(() => {
  for (const service of running.splice(0)) service.stop();
});

const CONFIG = { subnet: "10.60.0.0/24", gateway: "10.60.0.1" };

function member(kv: MemoryKeyValueStore, hostId: string, seen: Map<number, PublishedName[]>) {
  const cluster = new ClusterService({
    kv,
    logger: silent,
    identity: { hostId, vtep: `192.0.2.${hostId.length}` },
    blockLength: 26,
    onPeers: () => undefined,
    onNames: (vni, names) => seen.set(vni, names),
  });
  running.push(cluster);
  return cluster;
}

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  ms = 3_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const namesOf = (seen: Map<number, PublishedName[]>, vni: number): string[] =>
  (seen.get(vni) ?? []).flatMap((record) => record.names).sort();

/** Hosts a and b on network 4242, a's web1 published and seen by b. */
async function web1OnHostA() {
  const kv = new MemoryKeyValueStore();
  const seenB = new Map<number, PublishedName[]>();
  const a = member(kv, "host-a", new Map());
  const b = member(kv, "host-b", seenB);
  await a.joinNetwork(4242, CONFIG, { fresh: true });
  await b.joinNetwork(4242, CONFIG);
  a.setLocalNames(4242, new Map([["e1", { names: ["web1"], ipv4: "10.60.0.5" }]]));
  await a.namesSettled(4242);
  await until("web1 on host b", () => namesOf(seenB, 4242).includes("web1"));
  return { kv, a, seenB };
}

describe("names in etcd", () => {
  it(
    "a host's published names reach the other host's watch, and go on withdrawal",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const seenA = new Map<number, PublishedName[]>();
      const seenB = new Map<number, PublishedName[]>();
      const a = member(kv, "host-a", seenA);
      const b = member(kv, "host-b", seenB);
      await a.joinNetwork(4242, CONFIG, { fresh: true });
      await b.joinNetwork(4242, CONFIG);
      a.setLocalNames(4242, new Map([["e1", { names: ["web1", "front"], ipv4: "10.60.0.5" }]]));
      await a.namesSettled(4242);
      await until("web1 on host b", () => namesOf(seenB, 4242).includes("web1"));
      assert.deepEqual(seenB.get(4242), [
        { hostId: "host-a", endpointId: "e1", names: ["web1", "front"], ipv4: "10.60.0.5" },
      ]);
      a.setLocalNames(4242, new Map());
      await a.namesSettled(4242);
      assert.deepEqual(await kv.range("switchyard/v1/networks/4242/names/"), []);
      await until("web1 gone on host b", () => namesOf(seenB, 4242).length === 0);
    },
  );

  it(
    "a host's names go when its lease expires, and come back when it registers again",
    TIMEOUT,
    async () => {
      const { kv, a, seenB } = await web1OnHostA();
      for (const lease of kv.leases) kv.expireLease(lease);
      await until("web1 gone with the lease", () => !namesOf(seenB, 4242).includes("web1"));
      // Host a's renewal finds its lease gone and registers again in full, names included.
      assert.equal(await a.renewLease(), true);
      await until("web1 back", () => namesOf(seenB, 4242).includes("web1"));
    },
  );

  it("leaving a network removes this host's names with its other keys", TIMEOUT, async () => {
    const { kv, a, seenB } = await web1OnHostA();
    await a.leaveNetwork(4242);
    await until("web1 gone", () => namesOf(seenB, 4242).length === 0);
    const left = await kv.range("switchyard/v1/networks/4242/names/");
    assert.deepEqual(left, []);
  });

  it("names written by someone else are read only when well-formed", TIMEOUT, () => {
    const good = JSON.stringify({ names: ["web1", "web-1.alias"], ipv4: "10.60.0.5" });
    assert.deepEqual(parsePublishedName("h/e", good), {
      hostId: "h",
      endpointId: "e",
      names: ["web1", "web-1.alias"],
      ipv4: "10.60.0.5",
    });
    for (const [below, value] of [
      ["h/e", "not json"],
      ["h/e", JSON.stringify({ names: ["Web1"], ipv4: "10.60.0.5" })],
      ["h/e", JSON.stringify({ names: ["web1\n"], ipv4: "10.60.0.5" })],
      ["h/e", JSON.stringify({ names: ["a b"], ipv4: "10.60.0.5" })],
      ["h/e", JSON.stringify({ names: [], ipv4: "10.60.0.5" })],
      ["h/e", JSON.stringify({ names: ["web1"], ipv4: "10.60.0.5\n" })],
      ["h/e", JSON.stringify({ names: ["web1"], ipv4: "fd00::5" })],
      ["h/e", JSON.stringify({ names: "web1", ipv4: "10.60.0.5" })],
      ["h/e/x", good],
      ["h", good],
    ] as const) {
      assert.equal(parsePublishedName(below, value), undefined, `${below} ${value}`);
    }
    assert.deepEqual(publishableNames(["Web1", "web1", "/bad", "x y", 3, "ok_1"]), [
      "web1",
      "ok_1",
    ]);
  });
});

describe("the resolver's answers", () => {
  const table = new NameTable();
  table.replace(4242, [
    { hostId: "h2", endpointId: "e1", names: ["web1", "web"], ipv4: "10.60.0.5" },
    { hostId: "h3", endpointId: "e2", names: ["web2", "web"], ipv4: "10.60.0.70" },
  ]);
  table.replace(4343, [{ hostId: "h2", endpointId: "e3", names: ["db"], ipv4: "10.61.0.5" }]);
  const ask = (name: string, type: number = RecordType.A, vnis = [4242]) =>
    answerQuestion({ name, type, class: 1 }, vnis, table);

  it("A records of a name, all addresses of a shared alias", TIMEOUT, () => {
    assert.deepEqual(ask("web1"), {
      rcode: "NOERROR",
      authoritative: true,
      records: [{ type: "A", address: "10.60.0.5", ttl: 1 }],
    });
    assert.deepEqual(
      ask("web").records?.map((record) => (record.type === "A" ? record.address : "")),
      ["10.60.0.5", "10.60.0.70"],
    );
  });

  it(
    "AAAA of a known name is empty, unknown names and other networks' are refused",
    TIMEOUT,
    () => {
      assert.deepEqual(ask("web1", RecordType.AAAA), {
        rcode: "NOERROR",
        authoritative: true,
        records: [],
      });
      assert.equal(ask("nobody").rcode, "REFUSED");
      assert.equal(ask("db").rcode, "REFUSED", "db is on another network");
      assert.equal(ask("db", RecordType.A, [4242, 4343]).rcode, "NOERROR");
      assert.equal(ask("web1", RecordType.A, []).rcode, "REFUSED", "unknown client");
      assert.equal(
        answerQuestion({ name: "web1", type: 1, class: 3 }, [4242], table).rcode,
        "REFUSED",
      );
    },
  );

  it("PTR of a known address", TIMEOUT, () => {
    assert.deepEqual(ask("70.0.60.10.in-addr.arpa", RecordType.PTR).records, [
      { type: "PTR", target: "web2", ttl: 1 },
    ]);
    assert.equal(ask("9.0.60.10.in-addr.arpa", RecordType.PTR).rcode, "REFUSED");
  });

  it("a client resolves the networks its container is on, found by its address", TIMEOUT, () => {
    const state: StateDocument = emptyState();
    const network = (id: string, vxlanId?: number) =>
      ({ id, bridge: `sy-${id}`, ipv4: [], ipv6: [], ...(vxlanId ? { vxlanId } : {}) }) as never;
    state.networks = { n1: network("n1", 4242), n2: network("n2", 4343), n3: network("n3") };
    const endpoint = (id: string, networkId: string, address: string, sandbox?: string) =>
      ({
        id,
        networkId,
        address,
        hostVeth: "v",
        peerVeth: "p",
        mac: "m",
        ports: [],
        ...(sandbox ? { sandbox } : {}),
      }) as never;
    state.endpoints = {
      a: endpoint("a", "n1", "10.60.0.9/24", "/var/run/docker/netns/one"),
      b: endpoint("b", "n2", "10.61.0.9/24", "/var/run/docker/netns/one"),
      c: endpoint("c", "n1", "10.60.0.10/24"),
      d: endpoint("d", "n3", "10.62.0.9/24"),
    };
    assert.deepEqual(networksOfClient(state, "10.60.0.9").sort(), [4242, 4343]);
    assert.deepEqual(networksOfClient(state, "10.60.0.10"), [4242]);
    assert.deepEqual(networksOfClient(state, "10.62.0.9"), [], "not a multi-host network");
    assert.deepEqual(networksOfClient(state, "172.17.0.2"), []);
    assert.deepEqual(
      localNetworks(state).map((local) => [
        local.vni,
        local.endpoints.map((endpoint) => [endpoint.endpointId, endpoint.ipv4]),
      ]),
      [
        [
          4242,
          [
            ["a", "10.60.0.9"],
            ["c", "10.60.0.10"],
          ],
        ],
        [4343, [["b", "10.61.0.9"]]],
      ],
    );
  });
});

describe("publishing this host's container names from the Docker API", () => {
  it(
    "publishes on connect and at resync, withdraws what Docker no longer lists",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const cluster = member(kv, "host-a", new Map());
      await cluster.joinNetwork(4242, CONFIG, { fresh: true });
      const docker = new FakeDocker();
      const endpoints = [
        { endpointId: "ep1", ipv4: "10.60.0.5" },
        { endpointId: "ep2", ipv4: "10.60.0.6" },
      ];
      const names = new LocalNames({
        docker,
        cluster,
        networks: () => [{ networkId: "net1", vni: 4242, endpoints }],
        logger: silent,
        resyncMs: 60_000,
      });
      running.push(names);
      /** What etcd holds for an endpoint of host-a: its names, or undefined. */
      const stored = async (endpointId: string): Promise<string[] | undefined> => {
        const value = await kv.get(`switchyard/v1/networks/4242/names/host-a/${endpointId}`);
        return value === undefined ? undefined : (JSON.parse(value) as { names: string[] }).names;
      };
      docker.containers.set("c1", {
        Name: "/web1",
        NetworkSettings: {
          Networks: {
            mesh: { NetworkID: "net1", EndpointID: "ep1", Aliases: ["Front", "abc123def456"] },
            bridge: { NetworkID: "other", EndpointID: "ep9", Aliases: null },
          },
        },
      });
      docker.networks.set("net1", { c1: { EndpointID: "ep1" } });
      names.start();
      await until("web1 published", async () => (await stored("ep1")) !== undefined);
      assert.deepEqual(await stored("ep1"), ["web1", "front", "abc123def456"]);
      const raw = await kv.get("switchyard/v1/networks/4242/names/host-a/ep1");
      assert.ok(raw?.includes('"ipv4":"10.60.0.5"'), `stored: ${raw}`);

      docker.containers.set("c2", {
        Name: "/web2",
        NetworkSettings: {
          Networks: { mesh: { NetworkID: "net1", EndpointID: "ep2", DNSNames: ["web2", "w2"] } },
        },
      });
      docker.emit({
        Type: "network",
        Action: "connect",
        Actor: { ID: "net1", Attributes: { container: "c2" } },
      });
      await until("web2 published", async () => (await stored("ep2")) !== undefined);
      assert.deepEqual(await stored("ep2"), ["web2", "w2"]);

      // Docker no longer lists c1 (it went while this host missed the event): the resync withdraws it.
      docker.networks.set("net1", { c2: { EndpointID: "ep2" } });
      docker.emit({
        Type: "network",
        Action: "disconnect",
        Actor: { ID: "net1", Attributes: { container: "c1" } },
      });
      await until("web1 withdrawn", async () => (await stored("ep1")) === undefined);
      assert.deepEqual(await stored("ep2"), ["web2", "w2"]);

      // docker rename web2 api: published again under the new name.
      docker.containers.set("c2", {
        Name: "/api",
        NetworkSettings: {
          Networks: { mesh: { NetworkID: "net1", EndpointID: "ep2", DNSNames: ["api", "w2"] } },
        },
      });
      docker.emit({ Type: "container", Action: "rename", Actor: { ID: "c2", Attributes: {} } });
      await until("api published", async () => ((await stored("ep2")) ?? []).includes("api"));
      assert.deepEqual(await stored("ep2"), ["api", "w2"]);
    },
  );
});

describe("Join on a multi-host network routes the container to the resolver", () => {
  it(
    "a /32 through the gateway, a different length for the same container's next network",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const cluster = member(kv, "host-a", new Map());
      const t = await buildTestApp(undefined, { cluster, resolverAddress: "169.254.53.53" });
      const sandbox = "/var/run/docker/netns/0123456789ab";
      const routes: unknown[] = [];
      for (const [index, vni] of [4242, 4343].entries()) {
        const subnet = `10.6${index}.0.0/24`;
        const pool = await t.call("/IpamDriver.RequestPool", {
          AddressSpace: "LocalDefault",
          Pool: subnet,
          Options: {},
          V6: false,
        });
        const poolId = String(pool.body.PoolID);
        await t.call("/IpamDriver.RequestAddress", {
          PoolID: poolId,
          Address: `10.6${index}.0.1`,
          Options: { RequestAddressType: "com.docker.network.gateway" },
        });
        const network = String(index + 1).repeat(64);
        const created = await t.call("/NetworkDriver.CreateNetwork", {
          NetworkID: network,
          Options: { "com.docker.network.generic": { "vxlan.id": String(vni) } },
          IPv4Data: [
            { AddressSpace: "LocalDefault", Pool: subnet, Gateway: `10.6${index}.0.1/24` },
          ],
          IPv6Data: [],
        });
        assert.equal(created.status, 200, JSON.stringify(created.body));
        const address = await t.call("/IpamDriver.RequestAddress", { PoolID: poolId, Options: {} });
        const endpoint = `e${index}`.padEnd(64, "0");
        const made = await t.call("/NetworkDriver.CreateEndpoint", {
          NetworkID: network,
          EndpointID: endpoint,
          Interface: { Address: String(address.body.Address) },
          Options: {},
        });
        assert.equal(made.status, 200, JSON.stringify(made.body));
        const joined = await t.call("/NetworkDriver.Join", {
          NetworkID: network,
          EndpointID: endpoint,
          SandboxKey: sandbox,
          Options: {},
        });
        assert.equal(joined.status, 200, JSON.stringify(joined.body));
        routes.push(joined.body.StaticRoutes);
      }
      assert.deepEqual(routes, [
        [{ Destination: "169.254.53.53/32", RouteType: 0, NextHop: "10.60.0.1" }],
        [{ Destination: "169.254.53.52/31", RouteType: 0, NextHop: "10.61.0.1" }],
      ]);
      const bad = await t.call("/NetworkDriver.Join", {
        NetworkID: "1".repeat(64),
        EndpointID: "e0".padEnd(64, "0"),
        SandboxKey: "/var/run/docker/netns/x\nip link del eth0",
        Options: {},
      });
      assert.equal(bad.status, 500, JSON.stringify(bad.body));
      assert.match(String(bad.body.Err), /SandboxKey/);
    },
  );
});

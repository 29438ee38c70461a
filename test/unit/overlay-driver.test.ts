import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { pino } from "pino";
import { ClusterService } from "../../src/cluster/cluster.ts";
import { ClusterLink } from "../../src/driver/cluster-link.ts";
import { buildTestApp, FakeDatapath } from "../support/fakes.ts";
import { MemoryKeyValueStore } from "../support/memory-kv.ts";

/**
 * The driver's side of multi-host networks, through the protocol as dockerd calls it, with
 * the cluster on an in-memory key-value store: what reaches etcd, and what must not.
 */
const TIMEOUT = { timeout: 10_000 };
const NET = "ab".repeat(32);
const SUBNET = "10.60.0.0/24";
const ROOT = "switchyard/v1/networks/4242/";
const running: ClusterService[] = [];

afterEach(() => {
  for (const cluster of running.splice(0)) cluster.stop();
});

async function host(kv: MemoryKeyValueStore, hostId: string, datapath = new FakeDatapath()) {
  const cluster = new ClusterService({
    kv,
    logger: pino({ level: "silent" }),
    identity: { hostId, vtep: `192.0.2.${hostId.length}` },
    blockLength: 26,
    onPeers: () => undefined,
  });
  running.push(cluster);
  return buildTestApp(undefined, { cluster, datapath });
}

type App = Awaited<ReturnType<typeof host>>;

/** RequestPool (as with --ipam-driver switchyard:latest) and the gateway; answers the PoolID. */
async function switchyardPool(t: App, subPool = ""): Promise<string> {
  const pool = await t.call("/IpamDriver.RequestPool", {
    AddressSpace: "LocalDefault",
    Pool: SUBNET,
    SubPool: subPool,
    Options: {},
    V6: false,
  });
  assert.equal(pool.status, 200, JSON.stringify(pool.body));
  const poolId = String(pool.body.PoolID);
  const gateway = await t.call("/IpamDriver.RequestAddress", {
    PoolID: poolId,
    Address: "10.60.0.1",
    Options: { RequestAddressType: "com.docker.network.gateway" },
  });
  assert.equal(gateway.status, 200, JSON.stringify(gateway.body));
  return poolId;
}

function createNetwork(t: App, ipv6 = false) {
  return t.call("/NetworkDriver.CreateNetwork", {
    NetworkID: NET,
    Options: {
      "com.docker.network.generic": { "vxlan.id": "4242" },
      "com.docker.network.enable_ipv6": ipv6,
    },
    IPv4Data: [{ AddressSpace: "LocalDefault", Pool: SUBNET, Gateway: "10.60.0.1/24" }],
    IPv6Data: ipv6
      ? [{ AddressSpace: "LocalDefault", Pool: "fd00:60::/64", Gateway: "fd00:60::1/64" }]
      : [],
  });
}

describe("multi-host networks in the driver", () => {
  it(
    "vxlan.id without Switchyard's IPAM driver is refused before any etcd call",
    TIMEOUT,
    async () => {
      // Regression: with Docker's default IPAM every host handed out the same addresses.
      const kv = new MemoryKeyValueStore();
      const t = await host(kv, "host-a");
      kv.unavailable = true; // any etcd call would fail with "unreachable" instead
      const created = await createNetwork(t);
      assert.equal(created.status, 500);
      assert.equal(
        created.body.Err,
        "a multi-host network (-o vxlan.id=4242) needs Switchyard's IPAM driver, which keeps addresses apart across hosts: add --ipam-driver switchyard:latest to docker network create",
      );
      kv.unavailable = false;
      assert.deepEqual(await kv.range(""), []);
      assert.deepEqual(t.state.document.networks, {});
    },
  );

  it("vxlan.id with --ipv6 is refused clearly", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const t = await host(kv, "host-a");
    await switchyardPool(t);
    const created = await createNetwork(t, true);
    assert.equal(created.status, 500);
    assert.equal(
      created.body.Err,
      "a multi-host network (-o vxlan.id=4242) is IPv4 only for now: create it without --ipv6",
    );
    assert.deepEqual(await kv.range(""), []);
  });

  it("a creation that fails after the etcd join leaves no membership behind", TIMEOUT, async () => {
    // Regression: a failure between joining in etcd and the undo list (reading the underlay
    // MTU) left this host registered, and the network's config recorded, in etcd.
    const kv = new MemoryKeyValueStore();
    const datapath = new FakeDatapath();
    datapath.mtuOfAddress = async () => {
      throw new Error("Cannot find device");
    };
    const t = await host(kv, "host-a", datapath);
    await switchyardPool(t);
    const created = await createNetwork(t);
    assert.equal(created.status, 500);
    assert.match(String(created.body.Err), /Cannot find device/);
    assert.deepEqual(await kv.range(""), []);
  });

  it("a creation that fails in a setup step leaves no membership behind", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const datapath = new FakeDatapath();
    datapath.ensureVxlan = async () => {
      throw new Error("RTNETLINK answers: File exists");
    };
    const t = await host(kv, "host-a", datapath);
    await switchyardPool(t);
    const created = await createNetwork(t);
    assert.equal(created.status, 500);
    assert.deepEqual(await kv.range(""), []);
    assert.deepEqual(t.state.document.networks, {});
  });

  it(
    "with an --ip-range one block is claimed inside it, however many runs fail",
    TIMEOUT,
    async () => {
      // Regression: blocks were carved from the whole subnet; the first ones lay outside the
      // range, so each RequestAddress claimed one more block it could not use.
      const kv = new MemoryKeyValueStore();
      const t = await host(kv, "host-a");
      const poolId = await switchyardPool(t, "10.60.0.128/25");
      assert.equal((await createNetwork(t)).status, 200);
      const given: string[] = [];
      for (let run = 0; run < 3; run++) {
        const address = await t.call("/IpamDriver.RequestAddress", { PoolID: poolId, Options: {} });
        assert.equal(address.status, 200, JSON.stringify(address.body));
        given.push(String(address.body.Address));
        // the container failed to start: Docker gives the address back
        await t.call("/IpamDriver.ReleaseAddress", { PoolID: poolId, Address: given.at(-1) });
      }
      for (const address of given) {
        const last = Number(address.replace(/^10\.60\.0\.([0-9]+)\/24$/, "$1"));
        assert.ok(last >= 128 && last <= 254, `${address} is inside the range`);
      }
      const blocks = (await kv.range(`${ROOT}blocks/`)).map((entry) =>
        entry.key.slice(ROOT.length),
      );
      assert.deepEqual(blocks, ["blocks/10.60.0.128_26"]);
    },
  );

  it(
    "a static --ip inside another host's block is refused and given back here",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const a = await host(kv, "host-a");
      const b = await host(kv, "host-bb");
      const poolA = await switchyardPool(a);
      const poolB = await switchyardPool(b);
      assert.equal((await createNetwork(a)).status, 200);
      assert.equal((await createNetwork(b)).status, 200);
      const automatic = await a.call("/IpamDriver.RequestAddress", { PoolID: poolA, Options: {} });
      assert.equal(automatic.body.Address, "10.60.0.2/24");

      const refused = await b.call("/IpamDriver.RequestAddress", {
        PoolID: poolB,
        Address: "10.60.0.2",
        Options: {},
      });
      assert.equal(refused.status, 500);
      assert.match(String(refused.body.Err), /from which host host-a hands out addresses/);
      assert.equal(b.state.ipam.pool(poolB)?.allocatedCount, 1, "only the gateway stays held");
      const outside = await b.call("/IpamDriver.RequestAddress", {
        PoolID: poolB,
        Address: "10.60.0.200",
        Options: {},
      });
      assert.equal(outside.body.Address, "10.60.0.200/24");
    },
  );
});

describe("a multi-host side that could not be set up at start", () => {
  it(
    "multi-host calls say why until it is up; single-host ones never wait for it",
    TIMEOUT,
    async () => {
      // Regression: a failed cluster set-up (no default route at boot, a missing TLS file)
      // exited the process, and Docker then disabled the plugin: single-host networks too.
      const kv = new MemoryKeyValueStore();
      const first = await host(kv, "host-a");
      const poolId = await switchyardPool(first);
      assert.equal((await createNetwork(first)).status, 200);

      const reason = "multi-host networks are not available yet: no default route; retrying";
      const link = new ClusterLink();
      const again = await buildTestApp(first.store, { clusterLink: link });
      link.setPending(reason);
      const address = await again.call("/IpamDriver.RequestAddress", {
        PoolID: poolId,
        Address: "",
        Options: {},
      });
      assert.equal(address.status, 500, "no address a host alone could hand out twice");
      assert.equal(address.body.Err, reason);
      const other = await again.call("/NetworkDriver.CreateNetwork", {
        NetworkID: "cd".repeat(32),
        Options: { "com.docker.network.generic": { "vxlan.id": "4343" } },
        IPv4Data: [{ AddressSpace: "LocalDefault", Pool: "10.61.0.0/24", Gateway: "10.61.0.1/24" }],
        IPv6Data: [],
      });
      assert.equal(other.body.Err, reason);
      const single = await again.call("/IpamDriver.RequestPool", { Pool: "10.62.0.0/24" });
      assert.equal(single.status, 200, "single-host networks work meanwhile");

      const cluster = new ClusterService({
        kv,
        logger: pino({ level: "silent" }),
        identity: { hostId: "host-a", vtep: "192.0.2.6" },
        blockLength: 26,
        onPeers: () => undefined,
      });
      running.push(cluster);
      link.attach(cluster);
      await cluster.joinNetwork(4242, { subnet: SUBNET, gateway: "10.60.0.1/24" });
      const later = await again.call("/IpamDriver.RequestAddress", {
        PoolID: poolId,
        Address: "",
        Options: {},
      });
      assert.equal(later.status, 200, JSON.stringify(later.body));
    },
  );
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildTestApp } from "../support/fakes.ts";
import { MemoryStore } from "../support/memory-store.ts";

const NET = "a".repeat(64);
const EP = "b".repeat(64);
const VENDOR = "application/vnd.docker.plugins.v1+json";

/** Creates pool + gateway + network the way dockerd orders the calls. */
async function createNetwork(
  t: Awaited<ReturnType<typeof buildTestApp>>,
  generic: Record<string, string> = {},
) {
  const pool = await t.call("/IpamDriver.RequestPool", {
    AddressSpace: "LocalDefault",
    Pool: "10.15.20.0/24",
    SubPool: "10.15.20.128/25",
    Options: {},
    V6: false,
  });
  assert.equal(pool.status, 200, JSON.stringify(pool.body));
  const poolId = pool.body.PoolID as string;
  const gateway = await t.call("/IpamDriver.RequestAddress", {
    PoolID: poolId,
    Address: "10.15.20.1",
    Options: { RequestAddressType: "com.docker.network.gateway" },
  });
  assert.deepEqual(gateway.body, { Address: "10.15.20.1/24", Data: {} });
  const created = await t.call("/NetworkDriver.CreateNetwork", {
    NetworkID: NET,
    Options: { "com.docker.network.generic": generic, "com.docker.network.enable_ipv6": false },
    IPv4Data: [{ AddressSpace: "LocalDefault", Pool: "10.15.20.0/24", Gateway: "10.15.20.1/24" }],
    IPv6Data: [],
  });
  return { poolId, created };
}

describe("transport", () => {
  it("answers calls with no Content-Type and an empty body", async () => {
    const t = await buildTestApp();
    assert.deepEqual(await t.call("/Plugin.Activate"), {
      status: 200,
      body: { Implements: ["NetworkDriver", "IpamDriver"] },
    });
    assert.deepEqual(await t.call("/NetworkDriver.GetCapabilities"), {
      status: 200,
      body: { Scope: "local", ConnectivityScope: "local" },
    });
    assert.deepEqual(await t.call("/IpamDriver.GetCapabilities"), {
      status: 200,
      body: { RequiresMACAddress: false, RequiresRequestReplay: false },
    });
    assert.deepEqual(await t.call("/IpamDriver.GetDefaultAddressSpaces"), {
      status: 200,
      body: {
        LocalDefaultAddressSpace: "LocalDefault",
        GlobalDefaultAddressSpace: "GlobalDefault",
      },
    });
  });

  it("accepts the vendor content type", async () => {
    const t = await buildTestApp();
    const pool = await t.call("/IpamDriver.RequestPool", { Pool: "10.9.0.0/16" }, VENDOR);
    assert.deepEqual(pool, {
      status: 200,
      body: { PoolID: "LocalDefault/10.9.0.0/16", Pool: "10.9.0.0/16", Data: {} },
    });
  });

  it("answers an unknown path with 404 and Err", async () => {
    const t = await buildTestApp();
    const response = await t.call("/NetworkDriver.Teleport", {});
    assert.equal(response.status, 404);
    assert.match(String(response.body.Err), /Teleport is not an endpoint/);
  });

  it("answers malformed JSON with Err and changes nothing", async () => {
    const t = await buildTestApp();
    const response = await t.call("/IpamDriver.RequestPool", '{"Pool": "10.0.0.0/8"');
    assert.equal(response.status, 500);
    assert.match(String(response.body.Err), /not valid JSON/);
    assert.equal(t.store.saves, 0);
  });

  it("answers wrong field types with Err naming the field", async () => {
    const t = await buildTestApp();
    for (const [path, body, field] of [
      ["/IpamDriver.RequestAddress", { PoolID: 5 }, "PoolID"],
      ["/IpamDriver.RequestPool", { Pool: ["10.0.0.0/8"] }, "Pool"],
      ["/IpamDriver.RequestPool", { V6: "yes" }, "V6"],
      ["/NetworkDriver.CreateNetwork", { NetworkID: NET, IPv4Data: "x" }, "IPv4Data"],
      ["/NetworkDriver.Join", { NetworkID: NET }, "EndpointID"],
      ["/NetworkDriver.CreateEndpoint", { NetworkID: "../etc", EndpointID: EP }, "NetworkID"],
    ] as const) {
      const response = await t.call(path, body);
      assert.equal(response.status, 500, path);
      assert.match(
        String(response.body.Err),
        new RegExp(field),
        `${path}: ${String(response.body.Err)}`,
      );
    }
    assert.equal(t.store.saves, 0);
  });

  it("refuses bodies over the size cap", async () => {
    const t = await buildTestApp();
    const response = await t.call("/IpamDriver.RequestPool", {
      Pool: "10.0.0.0/8",
      Options: { x: "y".repeat(70_000) },
    });
    assert.equal(response.status, 500);
    assert.match(String(response.body.Err), /larger than/);
  });
});

describe("network lifecycle as dockerd drives it", () => {
  it("creates a bridge with the gateway, a veth per endpoint, and undoes it all", async () => {
    const t = await buildTestApp();
    const { poolId, created } = await createNetwork(t, {
      "com.docker.network.bridge.name": "sytest0",
    });
    assert.deepEqual(created, { status: 200, body: {} });
    assert.deepEqual(t.datapath.hostLinks.get("sytest0")?.addresses, ["10.15.20.1/24"]);

    const address = await t.call("/IpamDriver.RequestAddress", {
      PoolID: poolId,
      Address: "",
      Options: {},
    });
    assert.deepEqual(address.body, { Address: "10.15.20.128/24", Data: {} });

    const endpoint = await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { Address: "10.15.20.128/24", AddressIPv6: "", MacAddress: "" },
      Options: {},
    });
    assert.deepEqual(endpoint, {
      status: 200,
      body: { Interface: { MacAddress: "02:42:0a:0f:14:80" } },
    });
    assert.equal(t.datapath.hostLinks.get("csybbbbbbbbbbb")?.mac, "02:42:0a:0f:14:80");

    const join = await t.call("/NetworkDriver.Join", {
      NetworkID: NET,
      EndpointID: EP,
      SandboxKey: "/var/run/docker/netns/x",
      Options: {},
    });
    assert.deepEqual(join, {
      status: 200,
      body: {
        InterfaceName: { SrcName: "csybbbbbbbbbbb", DstPrefix: "eth" },
        StaticRoutes: [],
        DisableGatewayService: false,
        Gateway: "10.15.20.1",
      },
    });
    assert.equal(t.datapath.hostLinks.get("vsybbbbbbbbbbb")?.master, "sytest0");

    const info = await t.call("/NetworkDriver.EndpointOperInfo", {
      NetworkID: NET,
      EndpointID: EP,
    });
    assert.equal((info.body.Value as Record<string, unknown>).hostVeth, "vsybbbbbbbbbbb");

    assert.deepEqual(
      await t.call("/NetworkDriver.ProgramExternalConnectivity", {
        NetworkID: NET,
        EndpointID: EP,
        Options: {},
      }),
      { status: 200, body: {} },
    );
    assert.deepEqual(
      await t.call("/NetworkDriver.RevokeExternalConnectivity", { NetworkID: NET, EndpointID: EP }),
      { status: 200, body: {} },
    );
    assert.deepEqual(await t.call("/NetworkDriver.Leave", { NetworkID: NET, EndpointID: EP }), {
      status: 200,
      body: {},
    });
    assert.deepEqual(
      await t.call("/NetworkDriver.DeleteEndpoint", { NetworkID: NET, EndpointID: EP }),
      { status: 200, body: {} },
    );
    assert.equal(t.datapath.hostLinks.has("vsybbbbbbbbbbb"), false);
    assert.equal(t.datapath.hostLinks.has("csybbbbbbbbbbb"), false);
    assert.deepEqual(
      await t.call("/IpamDriver.ReleaseAddress", { PoolID: poolId, Address: "10.15.20.128" }),
      { status: 200, body: {} },
    );
    assert.deepEqual(
      await t.call("/IpamDriver.ReleaseAddress", { PoolID: poolId, Address: "10.15.20.1" }),
      { status: 200, body: {} },
    );
    assert.deepEqual(await t.call("/NetworkDriver.DeleteNetwork", { NetworkID: NET }), {
      status: 200,
      body: {},
    });
    assert.equal(t.datapath.hostLinks.has("sytest0"), false);
    assert.deepEqual(await t.call("/IpamDriver.ReleasePool", { PoolID: poolId }), {
      status: 200,
      body: {},
    });
    assert.deepEqual(t.state.document.networks, {});
    assert.deepEqual(t.state.document.ipam.pools, {});
  });

  it("names its own bridge sy- plus 12 hex of the network ID", async () => {
    const t = await buildTestApp();
    await createNetwork(t);
    assert.equal(t.datapath.hostLinks.get("sy-aaaaaaaaaaaa")?.kind, "bridge");
  });

  it("does not echo a MAC address Docker set", async () => {
    const t = await buildTestApp();
    await createNetwork(t);
    const endpoint = await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { Address: "10.15.20.200/24", MacAddress: "02:42:0A:E7:02:99" },
    });
    assert.deepEqual(endpoint, { status: 200, body: { Interface: {} } });
    assert.equal(t.datapath.hostLinks.get("csybbbbbbbbbbb")?.mac, "02:42:0a:e7:02:99");
  });

  it("gives internal networks no default route, as Docker 26 and later", async () => {
    const t = await buildTestApp();
    await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
    await t.call("/NetworkDriver.CreateNetwork", {
      NetworkID: NET,
      Options: { "com.docker.network.internal": true, "com.docker.network.generic": {} },
      IPv4Data: [{ Pool: "10.15.20.0/24", Gateway: "10.15.20.1/24" }],
    });
    await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { Address: "10.15.20.2/24" },
    });
    const join = await t.call("/NetworkDriver.Join", { NetworkID: NET, EndpointID: EP });
    assert.equal(join.body.DisableGatewayService, true);
    assert.equal(join.body.Gateway, undefined);
  });

  it("disables Docker's gateway service where the network has no gateway", async () => {
    const t = await buildTestApp();
    await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
    await t.call("/NetworkDriver.CreateNetwork", {
      NetworkID: NET,
      IPv4Data: [{ Pool: "10.15.20.0/24" }],
    });
    await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { Address: "10.15.20.2/24" },
    });
    const join = await t.call("/NetworkDriver.Join", { NetworkID: NET, EndpointID: EP });
    assert.equal(join.body.DisableGatewayService, true);
    assert.equal(join.body.Gateway, undefined);
  });
});

describe("bad requests leave state untouched", () => {
  it("a missing bridge is named in the error and no network is recorded", async () => {
    const t = await buildTestApp();
    await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
    const saved = t.store.saved;
    const { created } = await createNetworkOn(t, { bridge: "br-missing" });
    assert.equal(created.status, 500);
    assert.match(String(created.body.Err), /cannot use bridge "br-missing": no such interface/);
    assert.equal(t.store.saved, saved);
    assert.deepEqual(t.state.document.networks, {});
  });

  it("an interface that is not a bridge is refused", async () => {
    const t = await buildTestApp();
    t.datapath.addLink("dummy0", "dummy");
    const { created } = await createNetworkOn(t, { bridge: "dummy0" });
    assert.match(String(created.body.Err), /"dummy0": it is a dummy interface, not a bridge/);
  });

  it("an existing user bridge is used and never deleted", async () => {
    const t = await buildTestApp();
    t.datapath.addLink("br1", "bridge");
    const { created } = await createNetworkOn(t, { bridge: "br1" });
    assert.deepEqual(created.body, {});
    assert.deepEqual(t.datapath.hostLinks.get("br1")?.addresses, [], "never re-addressed");
    await t.call("/NetworkDriver.DeleteNetwork", { NetworkID: NET });
    assert.equal(t.datapath.hostLinks.has("br1"), true);
  });

  for (const [generic, message] of [
    [{ bridge: "a-very-long-bridge-name" }, /at most 15/],
    [{ bridge: "br;rm -rf" }, /characters/],
    [{ "com.docker.network.bridge.name": "" }, /must not be empty/],
    [{ "com.docker.network.driver.mtu": "9x" }, /mtu="9x" must be a whole number/],
    [{ "com.docker.network.bridge.enable_icc": "maybe" }, /must be true or false/],
    [{ colour: "blue" }, /unknown option "colour"/],
  ] as const) {
    it(`refuses ${JSON.stringify(generic)}`, async () => {
      const t = await buildTestApp();
      const { created } = await createNetworkOn(t, generic);
      assert.equal(created.status, 500);
      assert.match(String(created.body.Err), message);
      assert.deepEqual(t.state.document.networks, {});
      assert.equal(t.datapath.hostLinks.size, 0);
    });
  }

  it("unknown networks and endpoints get Err, not 404", async () => {
    const t = await buildTestApp();
    for (const path of [
      "/NetworkDriver.CreateEndpoint",
      "/NetworkDriver.Join",
      "/NetworkDriver.EndpointOperInfo",
      "/NetworkDriver.ProgramExternalConnectivity",
    ]) {
      const response = await t.call(path, { NetworkID: NET, EndpointID: EP });
      assert.equal(response.status, 500, path);
      assert.match(String(response.body.Err), /not known to Switchyard/, path);
    }
    for (const path of [
      "/NetworkDriver.DeleteEndpoint",
      "/NetworkDriver.Leave",
      "/NetworkDriver.DeleteNetwork",
      "/NetworkDriver.RevokeExternalConnectivity",
    ]) {
      assert.deepEqual(
        await t.call(path, { NetworkID: NET, EndpointID: EP }),
        { status: 200, body: {} },
        `${path} is idempotent`,
      );
    }
    const release = await t.call("/IpamDriver.ReleasePool", { PoolID: "LocalDefault/10.1.0.0/16" });
    assert.equal(release.status, 500);
    assert.equal(t.store.saves, 0);
  });

  it("invalid and overlapping CIDRs get Err", async () => {
    const t = await buildTestApp();
    assert.match(
      String((await t.call("/IpamDriver.RequestPool", { Pool: "10.0.0.0/33" })).body.Err),
      /10\.0\.0\.0\/33/,
    );
    await t.call("/IpamDriver.RequestPool", { Pool: "10.15.0.0/16" });
    const saved = t.store.saved;
    const overlap = await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
    assert.match(String(overlap.body.Err), /10\.15\.0\.0\/16/);
    assert.equal(t.store.saved, saved);
  });

  it("a failed save rolls the allocation back", async () => {
    const store = new MemoryStore();
    const t = await buildTestApp(store);
    const pool = await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/30" });
    store.failNextSave = true;
    const failed = await t.call("/IpamDriver.RequestAddress", { PoolID: pool.body.PoolID });
    assert.equal(failed.status, 500);
    const next = await t.call("/IpamDriver.RequestAddress", { PoolID: pool.body.PoolID });
    assert.deepEqual(
      next.body,
      { Address: "10.15.20.1/30", Data: {} },
      "the failed allocation did not stick",
    );
  });
});

async function createNetworkOn(
  t: Awaited<ReturnType<typeof buildTestApp>>,
  generic: Record<string, string>,
) {
  const created = await t.call("/NetworkDriver.CreateNetwork", {
    NetworkID: NET,
    Options: { "com.docker.network.generic": generic },
    IPv4Data: [{ AddressSpace: "LocalDefault", Pool: "10.15.20.0/24", Gateway: "10.15.20.1/24" }],
  });
  return { created };
}

describe("IPv6-only networks (com.docker.network.enable_ipv4=false, Docker 28+)", () => {
  it("are made without IPv4Data and their endpoints get only an IPv6 gateway", {
    timeout: 10_000,
  }, async () => {
    const t = await buildTestApp();
    const pool = await t.call("/IpamDriver.RequestPool", { Pool: "fd00:5::/64", V6: true });
    assert.equal(pool.status, 200);
    const created = await t.call("/NetworkDriver.CreateNetwork", {
      NetworkID: NET,
      Options: {
        "com.docker.network.enable_ipv4": false,
        "com.docker.network.enable_ipv6": true,
        "com.docker.network.generic": {},
      },
      IPv4Data: [],
      IPv6Data: [{ Pool: "fd00:5::/64", Gateway: "fd00:5::1/64" }],
    });
    assert.deepEqual(created, { status: 200, body: {} });
    const endpoint = await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { AddressIPv6: "fd00:5::2/64" },
    });
    assert.equal(endpoint.status, 200);
    const join = await t.call("/NetworkDriver.Join", { NetworkID: NET, EndpointID: EP });
    assert.equal(join.body.Gateway, undefined);
    assert.equal(join.body.GatewayIPv6, "fd00:5::1");
    assert.deepEqual(t.datapath.hostLinks.get(`sy-${NET.slice(0, 12)}`)?.addresses, [
      "fd00:5::1/64",
    ]);
  });
});

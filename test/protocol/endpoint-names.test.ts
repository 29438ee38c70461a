// Docker 29 names the container in RequestAddress (com.docker.network.endpoint.name); the
// network protocol never does. The endpoint that CreateEndpoint brings with that address gets
// the name, on disk, so names across hosts need no Docker API (and so no host socket).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildTestApp } from "../support/fakes.ts";
import { MemoryStore } from "../support/memory-store.ts";

const NAME = "com.docker.network.endpoint.name";
const NET = "a".repeat(64);
const EP = "b".repeat(64);

async function network(t: Awaited<ReturnType<typeof buildTestApp>>, ipv6 = false) {
  const v4 = await t.call("/IpamDriver.RequestPool", { Pool: "10.44.0.0/24" });
  const v6 = ipv6
    ? await t.call("/IpamDriver.RequestPool", { Pool: "fd00:44::/64", V6: true })
    : undefined;
  await t.call("/NetworkDriver.CreateNetwork", {
    NetworkID: NET,
    Options: { "com.docker.network.generic": {}, "com.docker.network.enable_ipv6": ipv6 },
    IPv4Data: [{ Pool: "10.44.0.0/24", Gateway: "10.44.0.1/24" }],
    IPv6Data: ipv6 ? [{ Pool: "fd00:44::/64", Gateway: "fd00:44::1/64" }] : [],
  });
  return { v4: v4.body.PoolID as string, v6: v6?.body.PoolID as string | undefined };
}

describe("container names from RequestAddress (Docker 29)", { timeout: 30_000 }, () => {
  it("the endpoint with the address gets the container's name, and keeps it on disk", async () => {
    const store = new MemoryStore();
    const t = await buildTestApp(store);
    const { v4 } = await network(t);
    const asked = await t.call("/IpamDriver.RequestAddress", {
      PoolID: v4,
      Address: "",
      Options: { [NAME]: "web" },
    });
    assert.equal(asked.status, 200);
    const created = await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { Address: asked.body.Address, AddressIPv6: "", MacAddress: "" },
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.equal(t.state.document.endpoints[EP]?.name, "web");
    const again = await buildTestApp(store);
    assert.equal(again.state.document.endpoints[EP]?.name, "web", "after a restart");
  });

  it("an IPv6-only endpoint is named from its IPv6 request", async () => {
    const t = await buildTestApp();
    const { v6 } = await network(t, true);
    const asked = await t.call("/IpamDriver.RequestAddress", {
      PoolID: v6,
      Address: "",
      Options: { [NAME]: "/six" },
    });
    await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { AddressIPv6: asked.body.Address },
    });
    assert.equal(t.state.document.endpoints[EP]?.name, "six", "Docker's leading slash dropped");
  });

  it("no name before 29, none from a malformed one, none after the address was released", async () => {
    const t = await buildTestApp();
    const { v4 } = await network(t);
    const endpoint = async (id: string, options: Record<string, string>, release = false) => {
      const asked = await t.call("/IpamDriver.RequestAddress", {
        PoolID: v4,
        Address: "",
        Options: options,
      });
      assert.equal(asked.status, 200, "a name Switchyard cannot use never fails the request");
      if (release) {
        await t.call("/IpamDriver.ReleaseAddress", { PoolID: v4, Address: asked.body.Address });
        await t.call("/IpamDriver.RequestAddress", { PoolID: v4, Address: asked.body.Address });
      }
      await t.call("/NetworkDriver.CreateEndpoint", {
        NetworkID: NET,
        EndpointID: id,
        Interface: { Address: asked.body.Address },
      });
      return t.state.document.endpoints[id];
    };
    assert.equal((await endpoint("c".repeat(64), {}))?.name, undefined);
    assert.equal((await endpoint("d".repeat(64), { [NAME]: "bad\nname" }))?.name, undefined);
    const released = await endpoint("e".repeat(64), { [NAME]: "gone" }, true);
    assert.ok(released !== undefined, "the endpoint exists");
    assert.equal(released.name, undefined, "a released address's name is forgotten");
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EPHEMERAL_PORTS } from "../../src/driver/ports.ts";
import { buildTestApp } from "../support/fakes.ts";

const NET = "a".repeat(64);
const EP1 = "1".repeat(64);
const EP2 = "2".repeat(64);

const portmap = (...items: object[]) => ({ "com.docker.network.portmap": items });
const tcp = (Port: number, HostPort: number, HostIP = "", HostPortEnd = HostPort) => ({
  Proto: 6,
  IP: "",
  Port,
  HostIP,
  HostPort,
  HostPortEnd,
});

async function withEndpoints(generic: Record<string, string> = {}, internal = false) {
  const t = await buildTestApp();
  await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
  await t.call("/NetworkDriver.CreateNetwork", {
    NetworkID: NET,
    Options: { "com.docker.network.generic": generic, "com.docker.network.internal": internal },
    IPv4Data: [{ Pool: "10.15.20.0/24", Gateway: "10.15.20.1/24" }],
  });
  for (const [id, address] of [
    [EP1, "10.15.20.2/24"],
    [EP2, "10.15.20.3/24"],
  ] as const) {
    await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: id,
      Interface: { Address: address },
    });
    await t.call("/NetworkDriver.Join", { NetworkID: NET, EndpointID: id });
  }
  const program = (id: string, options: object) =>
    t.call("/NetworkDriver.ProgramExternalConnectivity", {
      NetworkID: NET,
      EndpointID: id,
      Options: options,
    });
  return { ...t, program };
}

describe("published ports (ProgramExternalConnectivity)", () => {
  it("publishes the host port asked for and revokes it", async () => {
    const t = await withEndpoints();
    assert.deepEqual(await t.program(EP1, portmap(tcp(80, 8081))), { status: 200, body: {} });
    assert.deepEqual(t.publisher.opened.get(EP1), [
      { proto: "tcp", containerPort: 80, hostIp: "", hostPort: 8081, hostPortEnd: 8081 },
    ]);
    assert.equal(t.state.document.endpoints[EP1]?.ports.length, 1);
    await t.call("/NetworkDriver.RevokeExternalConnectivity", { NetworkID: NET, EndpointID: EP1 });
    assert.equal(t.publisher.openCount(), 0);
    assert.deepEqual(t.state.document.endpoints[EP1]?.ports, []);
  });

  it("releases the ports at Leave too (Docker 29 may send no Revoke after a live-restore)", {
    timeout: 10_000,
  }, async () => {
    const t = await withEndpoints();
    await t.program(EP1, portmap(tcp(80, 8081)));
    const left = await t.call("/NetworkDriver.Leave", { NetworkID: NET, EndpointID: EP1 });
    assert.deepEqual(left, { status: 200, body: {} });
    assert.equal(t.publisher.openCount(), 0);
    assert.deepEqual(t.state.document.endpoints[EP1]?.ports, []);
    assert.deepEqual(await t.program(EP2, portmap(tcp(80, 8081))), { status: 200, body: {} });
  });

  it("picks a free port for HostPort 0 and within a range", async () => {
    const t = await withEndpoints();
    await t.program(EP1, portmap(tcp(80, 0), tcp(81, 9000, "", 9002)));
    const [first, second] = t.publisher.opened.get(EP1) ?? [];
    assert.equal(first?.hostPort, EPHEMERAL_PORTS.first);
    assert.equal(second?.hostPort, 9000);
    await t.program(EP2, portmap(tcp(80, 0), tcp(81, 9000, "", 9002)));
    const [third, fourth] = t.publisher.opened.get(EP2) ?? [];
    assert.equal(third?.hostPort, EPHEMERAL_PORTS.first + 1, "next free ephemeral port");
    assert.equal(fourth?.hostPort, 9001, "next free port of the range");
  });

  it("refuses a host port another container publishes, naming it", async () => {
    const t = await withEndpoints();
    await t.program(EP1, portmap(tcp(80, 8081)));
    const saved = t.store.saved;
    const clash = await t.program(EP2, portmap(tcp(80, 8081, "127.0.0.1")));
    assert.equal(clash.status, 500);
    assert.match(
      String(clash.body.Err),
      /8081\/tcp is already published by the container at 10\.15\.20\.2 on network aaaaaaaaaaaa/,
    );
    assert.equal(t.store.saved, saved);
    assert.equal(t.publisher.opened.has(EP2), false);
  });

  it("the same port on two host addresses, or for two protocols, is no clash", async () => {
    const t = await withEndpoints();
    await t.program(EP1, portmap(tcp(80, 8081, "127.0.0.1")));
    const other = await t.program(
      EP2,
      portmap(tcp(80, 8081, "127.0.0.2"), { Proto: 17, Port: 80, HostIP: "", HostPort: 8081 }),
    );
    assert.deepEqual(other.body, {});
  });

  it("a port another program holds is refused and nothing stays open", async () => {
    const t = await withEndpoints();
    t.publisher.busy.add("8082/tcp");
    const failed = await t.program(EP1, portmap(tcp(80, 8081), tcp(81, 8082)));
    assert.match(String(failed.body.Err), /another program on the host already uses that port/);
    assert.equal(t.publisher.openCount(), 0);
    assert.deepEqual(t.state.document.endpoints[EP1]?.ports, []);
  });

  it("uses host_binding_ipv4 as the default host address", async () => {
    const t = await withEndpoints({ "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1" });
    await t.program(EP1, portmap(tcp(80, 8081)));
    assert.equal(t.publisher.opened.get(EP1)?.[0]?.hostIp, "127.0.0.1");
  });

  it("internal networks publish nothing", async () => {
    const t = await withEndpoints({}, true);
    assert.deepEqual((await t.program(EP1, portmap(tcp(80, 8081)))).body, {});
    assert.equal(t.publisher.openCount(), 0);
  });

  it("deleting the endpoint closes its ports", async () => {
    const t = await withEndpoints();
    await t.program(EP1, portmap(tcp(80, 8081)));
    await t.call("/NetworkDriver.DeleteEndpoint", { NetworkID: NET, EndpointID: EP1 });
    assert.equal(t.publisher.openCount(), 0);
  });
});

describe("status view", () => {
  it("shows networks, endpoints and published ports", async () => {
    const t = await withEndpoints({ "com.docker.network.bridge.name": "sy-status" });
    await t.program(EP1, portmap(tcp(80, 8081)));
    for (const method of ["GET", "POST"] as const) {
      const response = await t.app.inject({ method, url: "/Switchyard.Status" });
      assert.equal(response.statusCode, 200);
      const status = response.json();
      assert.equal(status.networks[0].bridge, "sy-status");
      assert.deepEqual(status.networks[0].subnets, ["10.15.20.0/24"]);
      assert.equal(status.networks[0].endpoints.length, 2);
      assert.equal(status.networks[0].endpoints[0].hostVeth, "vsy11111111111");
      assert.deepEqual(status.publishedPorts, [
        { port: "0.0.0.0:8081->80/tcp", container: "10.15.20.2", network: NET, endpoint: EP1 },
      ]);
    }
  });
});

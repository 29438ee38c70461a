import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildTestApp } from "../support/fakes.ts";
import { parsePrometheus, sampleValue } from "../support/prometheus.ts";

const NET = "a".repeat(64);
const EP1 = "1".repeat(64);
const EP2 = "2".repeat(64);

/** A network with two joined endpoints, the first publishing 8081->80/tcp. */
async function withContainers() {
  const t = await buildTestApp();
  const pool = await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
  const poolId = String(pool.body.PoolID);
  await t.call("/IpamDriver.RequestAddress", {
    PoolID: poolId,
    Address: "10.15.20.1",
    Options: { RequestAddressType: "com.docker.network.gateway" },
  });
  await t.call("/NetworkDriver.CreateNetwork", {
    NetworkID: NET,
    Options: { "com.docker.network.generic": { "com.docker.network.bridge.name": "sy-web" } },
    IPv4Data: [{ Pool: "10.15.20.0/24", Gateway: "10.15.20.1/24" }],
  });
  for (const id of [EP1, EP2]) {
    const address = await t.call("/IpamDriver.RequestAddress", { PoolID: poolId });
    await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: id,
      Interface: { Address: address.body.Address },
    });
    await t.call("/NetworkDriver.Join", { NetworkID: NET, EndpointID: id });
  }
  await t.call("/NetworkDriver.ProgramExternalConnectivity", {
    NetworkID: NET,
    EndpointID: EP1,
    Options: {
      "com.docker.network.portmap": [
        { Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: 8081, HostPortEnd: 8081 },
      ],
    },
  });
  const metrics = async () => {
    const response = await t.app.inject({ method: "GET", url: "/Switchyard.Metrics" });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    return parsePrometheus(response.body);
  };
  return { ...t, poolId, metrics };
}

/** `docker network inspect` output naming the network and the first container only. */
const INSPECT = JSON.stringify([
  {
    Name: "web",
    Id: NET,
    Containers: { ["c".repeat(64)]: { Name: "shop", EndpointID: EP1, MacAddress: "" } },
  },
]);

describe("/Switchyard.Status?format=table", () => {
  it("joins the names a POST brings and shows the ports", { timeout: 10_000 }, async () => {
    const t = await withContainers();
    const response = await t.app.inject({
      method: "POST",
      url: "/Switchyard.Status?format=table",
      payload: INSPECT,
    });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["content-type"], "text/plain; charset=utf-8");
    const lines = response.body.split("\n");
    assert.match(lines[0] ?? "", /^NETWORK ID +NAME +BRIDGE +SUBNET +GATEWAY/);
    assert.match(lines[1] ?? "", /^aaaaaaaaaaaa +web +sy-web +10\.15\.20\.0\/24 +10\.15\.20\.1 /);
    assert.match(response.body, /^CONTAINER +NETWORK +ADDRESS +MAC +HOST VETH +PORTS$/m);
    assert.match(response.body, /^shop +web +10\.15\.20\.2 +\S+ +\S+ +0\.0\.0\.0:8081->80\/tcp$/m);
    // The second container is not in the inspect output: its short endpoint ID stands in.
    assert.match(response.body, /^222222222222 +web +10\.15\.20\.3 +\S+ +\S+$/m);
  });

  it("a GET (no names) shows short IDs only", { timeout: 10_000 }, async () => {
    const t = await withContainers();
    const response = await t.app.inject({ method: "GET", url: "/Switchyard.Status?format=table" });
    assert.equal(response.statusCode, 200);
    assert.match(response.body, /^111111111111 +aaaaaaaaaaaa +10\.15\.20\.2 /m);
    assert.doesNotMatch(response.body, /[0-9a-f]{13}/);
  });

  it("JSON (the default) carries the names beside the full IDs", { timeout: 10_000 }, async () => {
    const t = await withContainers();
    const response = await t.app.inject({
      method: "POST",
      url: "/Switchyard.Status",
      payload: INSPECT,
    });
    assert.equal(response.statusCode, 200);
    const view = response.json();
    assert.equal(view.networks[0].id, NET);
    assert.equal(view.networks[0].name, "web");
    assert.equal(view.networks[0].endpoints[0].containerName, "shop");
    assert.deepEqual(view.publishedPorts, [
      {
        port: "0.0.0.0:8081->80/tcp",
        container: "10.15.20.2",
        containerName: "shop",
        network: NET,
        networkName: "web",
        endpoint: EP1,
      },
    ]);
  });

  it("refuses an unknown format and a body that is not inspect output", {
    timeout: 10_000,
  }, async () => {
    const t = await withContainers();
    const format = await t.app.inject({ method: "GET", url: "/Switchyard.Status?format=yaml" });
    assert.equal(format.statusCode, 500);
    assert.match(format.json().Err, /format/);
    const body = await t.app.inject({
      method: "POST",
      url: "/Switchyard.Status?format=table",
      payload: '{"Name":"web"}',
    });
    assert.equal(body.statusCode, 500);
    assert.match(body.json().Err, /docker network inspect/);
  });

  it("accepts inspect output larger than the protocol body limit", {
    timeout: 10_000,
  }, async () => {
    const t = await withContainers();
    const many = Array.from({ length: 2_000 }, (_, index) => ({
      Name: `other-${index}`,
      Id: index.toString(16).padStart(64, "0"),
      Containers: {},
    }));
    const response = await t.app.inject({
      method: "POST",
      url: "/Switchyard.Status?format=table",
      payload: JSON.stringify(many),
    });
    assert.equal(response.statusCode, 200);
  });
});

describe("/Switchyard.Metrics", () => {
  it("counts protocol calls by method and outcome, with latency", {
    timeout: 10_000,
  }, async () => {
    const t = await withContainers();
    const before = await t.metrics();
    const join = { method: "/NetworkDriver.Join" };
    assert.equal(sampleValue(before, "switchyard_requests_total", { ...join, outcome: "ok" }), 2);
    await t.call("/NetworkDriver.Join", { NetworkID: NET, EndpointID: "9".repeat(64) });
    const after = await t.metrics();
    assert.equal(sampleValue(after, "switchyard_requests_total", { ...join, outcome: "ok" }), 2);
    assert.equal(sampleValue(after, "switchyard_requests_total", { ...join, outcome: "error" }), 1);
    assert.equal(sampleValue(after, "switchyard_request_duration_seconds_count", join), 3);
    // The first scrape itself was counted, under its route.
    assert.equal(
      sampleValue(after, "switchyard_requests_total", {
        method: "/Switchyard.Metrics",
        outcome: "ok",
      }),
      1,
    );
  });

  it("unknown paths share one series instead of one each", { timeout: 10_000 }, async () => {
    const t = await withContainers();
    await t.call("/Nothing.Here");
    await t.call("/Nothing.There");
    const families = await t.metrics();
    assert.equal(
      sampleValue(families, "switchyard_requests_total", { method: "unknown", outcome: "error" }),
      2,
    );
    assert.equal(
      families
        .get("switchyard_requests_total")
        ?.samples.some((sample) => sample.labels.method?.startsWith("/Nothing")),
      false,
    );
  });

  it("shows pools, endpoints and published ports as they change", { timeout: 10_000 }, async () => {
    const t = await withContainers();
    let families = await t.metrics();
    const pool = { pool_id: t.poolId };
    assert.equal(sampleValue(families, "switchyard_pool_addresses_allocated", pool), 3);
    assert.equal(sampleValue(families, "switchyard_pool_addresses_free", pool), 251);
    assert.equal(sampleValue(families, "switchyard_published_ports", { proto: "tcp" }), 1);
    assert.equal(sampleValue(families, "switchyard_endpoints"), 2);
    assert.equal(sampleValue(families, "switchyard_networks"), 1);

    await t.call("/NetworkDriver.RevokeExternalConnectivity", { NetworkID: NET, EndpointID: EP1 });
    await t.call("/IpamDriver.ReleaseAddress", { PoolID: t.poolId, Address: "10.15.20.3" });
    families = await t.metrics();
    assert.equal(sampleValue(families, "switchyard_published_ports", { proto: "tcp" }), 0);
    assert.equal(sampleValue(families, "switchyard_pool_addresses_allocated", pool), 2);
    assert.equal(sampleValue(families, "switchyard_pool_addresses_free", pool), 252);
  });

  it("counts reconciliation repairs", { timeout: 10_000 }, async () => {
    const t = await withContainers();
    // The bridge went (a reboot, a person): reconciliation re-creates it.
    await t.datapath.deleteBridge("sy-web");
    await t.network.reconcile();
    t.network.stop();
    const families = await t.metrics();
    assert.equal(
      sampleValue(families, "switchyard_reconcile_repairs_total", {
        kind: "ensure-bridge",
        outcome: "ok",
      }),
      1,
    );
  });
});

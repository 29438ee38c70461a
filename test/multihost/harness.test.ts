// Smoke test of the multi-host harness (test/multihost/lib/cluster.ts) itself, not of any
// multi-host feature: three simulated Docker hosts (Docker-in-Docker) and etcd come up, each
// inner dockerd runs the Switchyard plugin (single-host networks work inside DinD), the hosts
// reach each other and etcd, a host and etcd restart, and nothing named sy-mh-* is left.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { TEST_IMAGE } from "../e2e/lib/config.ts";
import {
  type Cluster,
  clusterLeftovers,
  DOCKER_RELEASE,
  ETCD_ADDRESS,
  PLUGIN,
  type SimHost,
  startCluster,
} from "./lib/cluster.ts";

const HOSTS = 3;
const LOCAL_SUBNET = "10.77.0.0/24";
const LOCAL_GATEWAY = "10.77.0.1";

/**
 * A raw HTTP/1.0 request to etcd sent with busybox nc from inside `host`; the response. nc's
 * input stays open a moment: etcd's gRPC gateway cancels a request (408 "context canceled")
 * whose client already closed its side.
 */
function etcdRequestFrom(host: SimHost, method: string, path: string, body = ""): Promise<string> {
  return host.exec([
    "sh",
    "-c",
    '{ printf "%s %s HTTP/1.0\\r\\nContent-Type: application/json\\r\\nContent-Length: %s\\r\\n\\r\\n%s" "$0" "$1" "$2" "$3"; sleep 1; } | nc -w 3 "$4" 2379',
    method,
    path,
    String(Buffer.byteLength(body)),
    body,
    ETCD_ADDRESS,
  ]);
}

/** Creates the single-host Switchyard network `local` in `host` (if missing); pings its gateway. */
async function pingGatewayOnLocal(host: SimHost): Promise<string> {
  const networks = await host.docker(["network", "ls", "--format", "{{.Name}}"]);
  if (!networks.split("\n").includes("local")) {
    await host.docker([
      "network",
      "create",
      "-d",
      PLUGIN,
      "--ipam-driver",
      PLUGIN,
      "--subnet",
      LOCAL_SUBNET,
      "local",
    ]);
  }
  return host.docker([
    "run",
    "--rm",
    "--network",
    "local",
    TEST_IMAGE,
    "sh",
    "-c",
    `ip -4 -o addr show eth0 && ping -c 1 -W 2 ${LOCAL_GATEWAY}`,
  ]);
}

describe("multi-host harness (DinD hosts + etcd)", { timeout: 600_000 }, () => {
  let cluster: Cluster | undefined;
  const hosts = (): SimHost[] => {
    assert.ok(cluster, "cluster did not start");
    return cluster.hosts;
  };

  before(async () => {
    const started = Date.now();
    cluster = await startCluster({ hosts: HOSTS });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`# startCluster({ hosts: ${HOSTS} }) took ${seconds} s`);
  });

  after(async () => {
    await cluster?.destroy();
  });

  it("each inner dockerd answers on its own hostname and address", async () => {
    for (const [i, host] of hosts().entries()) {
      assert.equal(host.name, `sy-mh-h${i + 1}`);
      assert.equal(host.address, `10.231.100.${11 + i}`);
      const info = await host.docker(["info", "--format", "{{.ServerVersion}} {{.Name}}"]);
      // The release under test runs inside too (switchyard-test/dind:N).
      assert.match(info, new RegExp(`^${DOCKER_RELEASE}\\.\\d+\\.\\S+ ${host.name}$`));
      const addresses = await host.exec(["ip", "-4", "-o", "addr", "show", "eth0"]);
      assert.match(addresses, new RegExp(`inet ${host.address.replace(/\./g, "\\.")}/24`));
    }
  });

  it("the plugin is installed and enabled in every host", async () => {
    for (const host of hosts()) {
      const plugins = await host.docker(["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]);
      assert.ok(plugins.split("\n").includes(`${PLUGIN} true`), `${host.name}: ${plugins}`);
    }
  });

  it("a container on a single-host Switchyard network pings its gateway in every host", async () => {
    const outputs = await Promise.all(hosts().map((host) => pingGatewayOnLocal(host)));
    for (const output of outputs) {
      assert.match(output, /inet 10\.77\.0\.\d+\/24/);
      assert.match(output, /1 packets received/);
    }
  });

  it("hosts ping each other on sy-mh-net", async () => {
    const pairs = hosts().flatMap((from) =>
      hosts()
        .filter((to) => to !== from)
        .map((to) => ({ from, to })),
    );
    const results = await Promise.all(
      pairs.map(async ({ from, to }) => ({
        pair: `${from.name} -> ${to.name}`,
        outcome: await from.execMayFail(["ping", "-c", "1", "-W", "2", to.address]),
      })),
    );
    for (const { pair, outcome } of results) {
      assert.equal(outcome.exitCode, 0, `${pair}: ${outcome.stdout} ${outcome.stderr}`);
    }
  });

  it("etcd answers from the hosts and from the machine", async () => {
    const [h1, h2] = hosts();
    assert.ok(h1 && h2);
    assert.ok(cluster);
    assert.equal(cluster.etcdUrl, `http://${ETCD_ADDRESS}:2379`);
    assert.match(await etcdRequestFrom(h2, "GET", "/version"), /"etcdserver":"3\./);
    const key = Buffer.from("sy-mh/smoke/h1").toString("base64");
    const value = Buffer.from(h1.address).toString("base64");
    const put = await etcdRequestFrom(h1, "POST", "/v3/kv/put", JSON.stringify({ key, value }));
    assert.match(put, /^HTTP\/1\.0 200/);
    assert.deepEqual(await cluster.etcdKeys("sy-mh/smoke/"), ["sy-mh/smoke/h1"]);
    assert.equal((await cluster.etcdEntries("sy-mh/")).get("sy-mh/smoke/h1"), h1.address);
    assert.deepEqual(await cluster.etcdKeys("sy-mh/nothing/"), []);
  });

  it("etcd keeps its data across stopEtcd/startEtcd", async () => {
    assert.ok(cluster);
    await cluster.stopEtcd();
    await assert.rejects(
      fetch(`${cluster.etcdUrl}/version`, { signal: AbortSignal.timeout(1_000) }),
    );
    await cluster.startEtcd();
    assert.deepEqual(await cluster.etcdKeys("sy-mh/"), ["sy-mh/smoke/h1"]);
  });

  it("restartHost brings the host back with its plugin and networks", async () => {
    assert.ok(cluster);
    const [h1] = hosts();
    assert.ok(h1);
    const started = Date.now();
    await cluster.restartHost(h1);
    console.log(`# restartHost(${h1.name}) took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const plugins = await h1.docker(["plugin", "ls", "--format", "{{.Name}} {{.Enabled}}"]);
    assert.ok(plugins.split("\n").includes(`${PLUGIN} true`), plugins);
    const networks = await h1.docker(["network", "ls", "--format", "{{.Name}}"]);
    assert.ok(networks.split("\n").includes("local"), networks);
    assert.match(await pingGatewayOnLocal(h1), /1 packets received/);
  });

  it("destroy leaves nothing named sy-mh-*", async () => {
    assert.ok(cluster);
    const started = Date.now();
    await cluster.destroy();
    console.log(`# destroy took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.deepEqual(await clusterLeftovers(), []);
    await cluster.destroy(); // a second call is harmless
  });
});

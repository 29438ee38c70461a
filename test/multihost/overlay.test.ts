// Multi-host networks end to end: three Docker-in-Docker hosts and etcd. One
// network made with the same -o vxlan.id on every host is one network: containers on all
// hosts reach each other, parallel starts never share an address, etcd going away does not
// cut running containers off, a restarted host comes back, an internal overlay is reached from
// outside only through a front-end container, and removing it everywhere leaves nothing.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { TEST_IMAGE } from "../e2e/lib/config.ts";
import { httpServerCommand } from "../e2e/lib/docker.ts";
import { waitFor } from "../e2e/lib/wait.ts";
import { type Cluster, ETCD_URL, PLUGIN, type SimHost, startCluster } from "./lib/cluster.ts";
import { addressOf, createMesh, pingFrom } from "./lib/commands.ts";

const MESH = "mesh";
const BACKEND = "backend";
const PER_HOST = 30;

describe("multi-host overlay (3 DinD hosts + etcd)", { timeout: 900_000 }, () => {
  let cluster: Cluster | undefined;
  const hosts = (): SimHost[] => {
    assert.ok(cluster, "cluster did not start");
    return cluster.hosts;
  };
  /** One long-running container per host on the mesh: h1-c, h2-c, h3-c. */
  const anchors = new Map<SimHost, { name: string; address: string }>();

  before(async () => {
    cluster = await startCluster({
      hosts: 3,
      pluginSettings: () => [`ETCD_ENDPOINTS=${ETCD_URL}`, "ADDRESS_BLOCK_SIZE=27"],
    });
  });

  after(async () => {
    await cluster?.destroy();
  });

  it("the same vxlan.id on every host makes one network; containers on all hosts reach each other", async () => {
    await Promise.all(hosts().map((host) => createMesh(host, MESH, "4242", "10.60.0.0/16")));
    for (const host of hosts()) {
      const name = `${host.name}-c`;
      await host.docker([
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        name,
        "--network",
        MESH,
        TEST_IMAGE,
        "sleep",
        "3600",
      ]);
      anchors.set(host, { name, address: await addressOf(host, name, MESH) });
    }
    const addresses = [...anchors.values()].map((anchor) => anchor.address);
    assert.equal(new Set(addresses).size, 3, `distinct addresses: ${addresses.join(", ")}`);
    for (const [from, source] of anchors) {
      for (const [to, target] of anchors) {
        if (from === to) continue;
        await waitFor(`${source.name} reaches ${target.name} (${target.address})`, () =>
          pingFrom(from, source.name, target.address),
        );
      }
      assert.equal(
        await pingFrom(from, source.name, "10.60.0.1"),
        true,
        "the gateway answers on every host",
      );
    }
  });

  it(`${PER_HOST} containers started in parallel on every host get ${PER_HOST * 3} distinct addresses`, async () => {
    const started = await Promise.all(
      hosts().map(async (host) => {
        const names = Array.from({ length: PER_HOST }, (_, index) => `${host.name}-p${index}`);
        await Promise.all(
          names.map((name) =>
            host.docker([
              "run",
              "-d",
              "--name",
              name,
              "--network",
              MESH,
              TEST_IMAGE,
              "sleep",
              "3600",
            ]),
          ),
        );
        return Promise.all(names.map((name) => addressOf(host, name, MESH)));
      }),
    );
    const all = started.flat();
    assert.equal(all.length, PER_HOST * 3);
    assert.equal(new Set(all).size, PER_HOST * 3, "no address twice across hosts");
    await Promise.all(
      hosts().map((host) =>
        host.docker([
          "rm",
          "-f",
          ...Array.from({ length: PER_HOST }, (_, index) => `${host.name}-p${index}`),
        ]),
      ),
    );
  });

  it("stopping etcd leaves running containers connected", async () => {
    assert.ok(cluster);
    await cluster.stopEtcd();
    try {
      const [first, second] = [...anchors.entries()];
      assert.ok(first && second);
      assert.equal(await pingFrom(first[0], first[1].name, second[1].address), true);
      await sleep(2_000);
      assert.equal(await pingFrom(second[0], second[1].name, first[1].address), true);
    } finally {
      await cluster.startEtcd();
    }
  });

  it("a restarted host rejoins: its containers come back reachable", async () => {
    assert.ok(cluster);
    const [restarted, other] = hosts();
    assert.ok(restarted && other);
    await cluster.restartHost(restarted);
    const anchor = anchors.get(restarted);
    assert.ok(anchor);
    await waitFor(
      "the restarted host's container runs again",
      async () =>
        (await restarted.docker(["inspect", "-f", "{{.State.Running}}", anchor.name])) === "true",
      60_000,
    );
    const address = await addressOf(restarted, anchor.name, MESH);
    anchors.set(restarted, { name: anchor.name, address });
    const otherAnchor = anchors.get(other);
    assert.ok(otherAnchor);
    await waitFor(
      `${otherAnchor.name} reaches the restarted host's container (${address})`,
      () => pingFrom(other, otherAnchor.name, address),
      60_000,
    );
    await waitFor("and back", () => pingFrom(restarted, anchor.name, otherAnchor.address), 30_000);
  });

  it("an internal overlay is reached from outside only through a front-end container", async () => {
    const [h1, h2] = hosts();
    assert.ok(h1 && h2);
    await Promise.all(
      [h1, h2].map((host) => createMesh(host, BACKEND, "4343", "10.61.0.0/24", ["--internal"])),
    );
    await h2.docker([
      "run",
      "-d",
      "--name",
      "db",
      "--network",
      BACKEND,
      TEST_IMAGE,
      ...httpServerCommand("backend-data"),
    ]);
    const db = await addressOf(h2, "db", BACKEND);
    // The front end sits on a normal network (publishing a port) and on the internal overlay.
    await h1.docker([
      "network",
      "create",
      "-d",
      PLUGIN,
      "--ipam-driver",
      PLUGIN,
      "--subnet",
      "10.62.0.0/24",
      "front",
    ]);
    await h1.docker([
      "run",
      "-d",
      "--name",
      "lb",
      "--network",
      "front",
      "-p",
      "8080:8080",
      TEST_IMAGE,
      // A one-line load balancer: every connection is relayed to the back end.
      ...["nc", "-ll", "-p", "8080", "-e", "nc", db, "80"],
    ]);
    await h1.docker(["network", "connect", BACKEND, "lb"]);
    await waitFor("the front end reaches the back end on the other host", () =>
      pingFrom(h1, "lb", db),
    );
    const viaFront = await h1.exec([
      "sh",
      "-c",
      `{ printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 2; } | nc -w 3 ${h1.address} 8080 | tail -1`,
    ]);
    assert.equal(viaFront.trim(), "backend-data", "outside → front end → internal overlay");
    await h2.docker([
      "run",
      "-d",
      "--name",
      "probe",
      "--network",
      BACKEND,
      TEST_IMAGE,
      "sleep",
      "600",
    ]);
    assert.equal(await pingFrom(h2, "probe", db), true, "inside the overlay all is reachable");
    // Docker 20.10 gives internal networks a default route too; the packet filter is what
    // keeps traffic in, so another host must be unreachable.
    assert.equal(
      await pingFrom(h2, "probe", h1.address),
      false,
      "no way out of an internal overlay: another host is unreachable",
    );
  });

  it("a multi-host side that cannot be set up at start keeps single-host networks up", async () => {
    // Regression: a failed cluster set-up at start (here: a VXLAN_LOCAL interface that does
    // not exist, with etcd stopped too) exited the process; Docker restarted it, then
    // disabled it, and single-host networks went down with it.
    assert.ok(cluster);
    const [h1, h2] = hosts();
    assert.ok(h1 && h2);
    const single = ["-d", PLUGIN, "--ipam-driver", PLUGIN];
    await h1.docker(["network", "create", ...single, "--subnet", "10.72.0.0/24", "solo"]);
    const run = (name: string, network: string) =>
      h1.docker(["run", "-d", "--name", name, "--network", network, TEST_IMAGE, "sleep", "3600"]);
    await run("solo-a", "solo");
    await h1.docker(["plugin", "disable", "-f", PLUGIN]);
    await h1.docker(["plugin", "set", PLUGIN, "VXLAN_LOCAL=sy-nowhere0"]);
    await cluster.stopEtcd();
    try {
      await h1.docker(["plugin", "enable", PLUGIN]);
      const since = Date.now();
      await h1.docker(["network", "create", ...single, "--subnet", "10.72.1.0/24", "solo2"]);
      await run("solo-b", "solo2");
      assert.equal(await pingFrom(h1, "solo-a", "10.72.0.1"), true, "a network made before");
      assert.equal(await pingFrom(h1, "solo-b", "10.72.1.1"), true, "a network made now");
      const refused = await h1.dockerMayFail([
        "network",
        "create",
        ...single,
        "-o",
        "vxlan.id=4545",
        "--subnet",
        "10.73.0.0/24",
        "mesh2",
      ]);
      assert.notEqual(refused.exitCode, 0, "a multi-host network cannot be made yet");
      assert.match(refused.stderr, /multi-host networks are not available yet: .*sy-nowhere0/);
      assert.match(await h1.dockerdLog(400), /multi-host networks are not available yet/);
      // Docker disables a plugin that keeps exiting; this one must still be enabled a minute on.
      await sleep(Math.max(0, 60_000 - (Date.now() - since)));
      assert.equal(await h1.docker(["plugin", "inspect", "-f", "{{.Enabled}}", PLUGIN]), "true");
      assert.equal(await pingFrom(h1, "solo-a", "10.72.0.1"), true, "still, a minute on");
    } finally {
      await h1.dockerMayFail(["rm", "-f", "solo-a", "solo-b"]);
      await h1.dockerMayFail(["network", "rm", "solo", "solo2"]);
      await cluster.startEtcd();
      await h1.docker(["plugin", "disable", "-f", PLUGIN]);
      await h1.docker(["plugin", "set", PLUGIN, "VXLAN_LOCAL="]);
      await h1.docker(["plugin", "enable", PLUGIN]);
    }
    const [mine, theirs] = [anchors.get(h1), anchors.get(h2)];
    assert.ok(mine && theirs);
    await waitFor(
      "the mesh works again on host 1",
      () => pingFrom(h1, mine.name, theirs.address),
      60_000,
    );
  });

  it("removing the networks on every host leaves nothing in etcd nor on the hosts", async () => {
    assert.ok(cluster);
    const [h1, h2] = hosts();
    assert.ok(h1 && h2);
    await h1.docker(["rm", "-f", "lb"]);
    await h2.docker(["rm", "-f", "db", "probe"]);
    await h1.docker(["network", "rm", "front"]);
    for (const host of hosts()) {
      const anchor = anchors.get(host);
      if (anchor !== undefined) await host.docker(["rm", "-f", anchor.name]);
      await host.docker(["network", "rm", MESH]);
    }
    await Promise.all([h1, h2].map((host) => host.docker(["network", "rm", BACKEND])));
    assert.deepEqual(await cluster.etcdKeys("switchyard/"), []);
    for (const host of hosts()) {
      const links = await host.exec(["/usr/bin/ip", "-br", "link"]);
      assert.doesNotMatch(
        links,
        /syvx|sy-[0-9a-f]{12}|vsy/,
        `${host.name} keeps no Switchyard link`,
      );
    }
  });
});

// Names across hosts (scenario S11): three Docker-in-Docker hosts and etcd, each
// dockerd with `--dns 169.254.53.53` (Switchyard's resolver: the one-time per-host setting).
// Containers resolve the names and aliases of containers on other hosts of a multi-host
// network; HAProxy on host 1 reaches web1 and web2 on hosts 2 and 3 by name through an
// --internal overlay; names go when their container or their host's lease does; and 90
// parallel `docker run` with static and automatic addresses never share an address.

import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { TEST_IMAGE } from "../e2e/lib/config.ts";
import { httpServerCommand } from "../e2e/lib/docker.ts";
import { waitFor } from "../e2e/lib/wait.ts";
import {
  CLUSTER_GATEWAY,
  type Cluster,
  DOCKER_RELEASE,
  ETCD_URL,
  PLUGIN,
  type SimHost,
  startCluster,
} from "./lib/cluster.ts";
import { addressOf, createMesh, pingFrom, resolveFrom } from "./lib/commands.ts";

/** The name the machine's test resolver answers, and its address. */
const UPSTREAM_NAME = "upstream.example";
const UPSTREAM_ADDRESS = "10.9.9.9";

/**
 * A tiny resolver on the machine (the hosts' second `dns` server): an A record for
 * UPSTREAM_NAME, NXDOMAIN for the rest. Stands in for the user's real upstream.
 */
async function startUpstream(address: string): Promise<Socket> {
  const socket = createSocket("udp4");
  socket.on("message", (query, peer) => {
    if (query.length < 17) return;
    // The question: labels from offset 12 to the zero byte, then type and class.
    let offset = 12;
    const labels: string[] = [];
    while (offset < query.length && query[offset] !== 0) {
      const length = query[offset] ?? 0;
      labels.push(query.subarray(offset + 1, offset + 1 + length).toString("latin1"));
      offset += length + 1;
    }
    const question = query.subarray(12, offset + 5);
    const type = query.readUInt16BE(offset + 1);
    const known = labels.join(".").toLowerCase() === UPSTREAM_NAME && type === 1;
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2);
    header.writeUInt16BE(known ? 0x8180 : 0x8183, 2); // response, RD+RA; NOERROR or NXDOMAIN
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(known ? 1 : 0, 6);
    const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
    const rdata = Buffer.from(UPSTREAM_ADDRESS.split(".").map(Number));
    const reply = Buffer.concat(known ? [header, question, answer, rdata] : [header, question]);
    socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(53, address, () => resolve());
  });
  socket.unref();
  return socket;
}

/** Docker 29 and later name containers in RequestAddress: names need no Docker API there. */
const DOCKER_29 = Number(DOCKER_RELEASE) >= 29;
const HAPROXY_IMAGE = "switchyard-test/haproxy:latest";
const RESOLVER = "169.254.53.53";
const MESH = "mesh";
const MIXED = "mixed";
const PER_HOST = 30;
/** The lease TTL hosts register with (src/cluster/lease.ts). */
const LEASE_TTL_MS = 15_000;

/** HAProxy's config, as printf arguments: web1 and web2 by name, round robin. */
const HAPROXY_CONFIG = [
  "global",
  "  log stdout format raw local0",
  "defaults",
  "  mode http",
  "  log global",
  "  timeout connect 5s",
  "  timeout client 30s",
  "  timeout server 30s",
  "frontend web",
  "  bind :80",
  "  default_backend webs",
  "backend webs",
  "  balance roundrobin",
  "  server web1 web1:80",
  "  server web2 web2:80",
];

/** Milliseconds until `check` holds (polling), or a failure naming `what` after `limitMs`. */
async function timeUntil(
  what: string,
  check: () => Promise<boolean>,
  limitMs: number,
): Promise<number> {
  const started = Date.now();
  await waitFor(what, check, limitMs);
  return Date.now() - started;
}

describe("names across hosts (3 DinD hosts + etcd, dockerd --dns 169.254.53.53)", {
  timeout: 900_000,
}, () => {
  let cluster: Cluster | undefined;
  let upstream: Socket | undefined;
  const hosts = (): [SimHost, SimHost, SimHost] => {
    assert.ok(cluster, "cluster did not start");
    const [h1, h2, h3] = cluster.hosts;
    assert.ok(h1 && h2 && h3);
    return [h1, h2, h3];
  };

  before(async () => {
    cluster = await startCluster({
      hosts: 3,
      // Hosts 1 and 2 grant the Docker API (aliases); host 3 does on releases before 29 only:
      // on 29 its names come from Docker's requests alone, the default.
      pluginSettings: (host) => [
        `ETCD_ENDPOINTS=${ETCD_URL}`,
        "ADDRESS_BLOCK_SIZE=27",
        ...(host.name.endsWith("3") && DOCKER_29 ? [] : ["docker-api.source=/run"]),
      ],
      // A simulated host is a container on a user-defined network, so its /etc/resolv.conf
      // says `options ndots:0`; with ndots set, Docker's embedded DNS forwards no single-label
      // name. Options of one's own (without ndots) replace the host's: the README says so.
      // The machine's test resolver (UPSTREAM) is the next server, as a user's real one is.
      dockerdArgs: ["--dns", RESOLVER, "--dns", CLUSTER_GATEWAY, "--dns-opt", "timeout:2"],
      images: [HAPROXY_IMAGE],
    });
    // On the machine's address on sy-mh-net, which exists once the cluster is up.
    upstream = await startUpstream(CLUSTER_GATEWAY);
  });

  after(async () => {
    upstream?.close();
    // SY_MH_KEEP=1 keeps the hosts for a look after a failure (removed by the next run).
    if (process.env.SY_MH_KEEP !== "1") await cluster?.destroy();
  });

  it("a container resolves the names and aliases of containers on other hosts", async (t) => {
    const [h1, h2, h3] = hosts();
    await Promise.all(
      hosts().map((host) => createMesh(host, MESH, "4242", "10.60.0.0/16", ["--internal"])),
    );
    await h1.docker([
      "run",
      "-d",
      "--name",
      "probe",
      "--network",
      MESH,
      TEST_IMAGE,
      "sleep",
      "3600",
    ]);
    await h2.docker([
      "run",
      "-d",
      "--name",
      "web1",
      "--network",
      MESH,
      "--network-alias",
      "backend-a",
      TEST_IMAGE,
      ...httpServerCommand("web1"),
    ]);
    const web1 = await addressOf(h2, "web1", MESH);
    await h3.docker([
      "run",
      "-d",
      "--name",
      "web2",
      "--network",
      MESH,
      "--network-alias",
      "backend-b",
      TEST_IMAGE,
      ...httpServerCommand("web2"),
    ]);
    const web2 = await addressOf(h3, "web2", MESH);
    assert.notEqual(web1, web2);
    const took = await timeUntil(
      "web2 (started on host 3) resolves on host 1",
      async () => (await resolveFrom(h1, "probe", "web2")).join() === web2,
      10_000,
    );
    t.diagnostic(`web2 resolved on host 1 ${took} ms after its docker run returned`);
    assert.deepEqual(await resolveFrom(h1, "probe", "web1"), [web1]);
    assert.deepEqual(await resolveFrom(h1, "probe", "backend-a"), [web1], "a network alias");
    // Host 3 on Docker 29 has no docker-api grant: its container's name, not its alias.
    assert.deepEqual(
      await resolveFrom(h1, "probe", "backend-b"),
      DOCKER_29 ? [] : [web2],
      DOCKER_29 ? "an alias of a host without the grant is not published" : "a network alias",
    );
    assert.deepEqual(await resolveFrom(h1, "probe", "WEB1"), [web1], "names match in any case");
    assert.deepEqual(await resolveFrom(h1, "probe", "nobody-here"), [], "unknown names fail");
    await waitFor("web2 pings web1 by name, host 3 → host 2", () => pingFrom(h3, "web2", "web1"));
    await waitFor("and web2 pings web1 by its alias", () => pingFrom(h3, "web2", "backend-a"));
  });

  it("HAProxy on host 1 reaches web1 and web2 by name; outside reaches it only through its port", async () => {
    const [h1, , h3] = hosts();
    await h1.docker([
      "run",
      "-d",
      "--name",
      "haproxy",
      "--network",
      MESH,
      "-p",
      "80:80",
      HAPROXY_IMAGE,
      "sh",
      "-c",
      `printf '%s\\n' ${HAPROXY_CONFIG.map((line) => `'${line}'`).join(" ")} > /tmp/haproxy.cfg && exec haproxy -db -f /tmp/haproxy.cfg`,
    ]);
    await h1.docker(["network", "connect", "bridge", "haproxy"]);
    const seen: string[] = [];
    await waitFor(
      "HAProxy answers on host 1's port 80",
      async () => {
        const response = await fetch(`http://${h1.address}/`, {
          signal: AbortSignal.timeout(3_000),
        });
        return response.ok;
      },
      30_000,
    );
    for (let request = 0; request < 6; request++) {
      const response = await fetch(`http://${h1.address}/`, { signal: AbortSignal.timeout(5_000) });
      seen.push((await response.text()).trim());
    }
    assert.deepEqual([...new Set(seen)].sort(), ["web1", "web2"], `answers: ${seen.join(" ")}`);
    assert.equal(
      await pingFrom(h3, "web2", CLUSTER_GATEWAY),
      false,
      "nothing on the internal network reaches outside (the machine)",
    );
    const out = await h3.dockerMayFail([
      "exec",
      "web2",
      "wget",
      "-q",
      "-T",
      "3",
      "-O",
      "-",
      `http://${h1.address}/`,
    ]);
    assert.notEqual(out.exitCode, 0, "not even host 1's published port, from inside the mesh");
  });

  it("a name stops resolving on other hosts once its container is removed", async (t) => {
    const [h1, h2] = hosts();
    await h2.docker([
      "run",
      "-d",
      "--name",
      "short",
      "--network",
      MESH,
      TEST_IMAGE,
      "sleep",
      "3600",
    ]);
    const short = await addressOf(h2, "short", MESH);
    await waitFor(
      "short resolves on host 1",
      async () => (await resolveFrom(h1, "probe", "short")).join() === short,
      10_000,
    );
    await h2.docker(["rm", "-f", "short"]);
    const took = await timeUntil(
      "short no longer resolves on host 1",
      async () => (await resolveFrom(h1, "probe", "short")).length === 0,
      10_000,
    );
    t.diagnostic(`short stopped resolving on host 1 ${took} ms after docker rm -f returned`);
  });

  it("names removed or added while etcd is frozen agree within 5 s of its return", async (t) => {
    // Regression: a delete lost to an etcd blip left the name resolving everywhere under the
    // live lease (and a put lost so, a name that never appeared): names were remembered as
    // written instead of compared with etcd.
    assert.ok(cluster);
    const [h1, h2, h3] = hosts();
    const run = (name: string) =>
      h3.docker(["run", "-d", "--name", name, "--network", MESH, TEST_IMAGE, "sleep", "3600"]);
    await run("doomed");
    const doomed = await addressOf(h3, "doomed", MESH);
    await waitFor(
      "doomed resolves on host 1",
      async () => (await resolveFrom(h1, "probe", "doomed")).join() === doomed,
      10_000,
    );
    await cluster.pauseEtcd();
    try {
      await h3.docker(["rm", "-f", "doomed"]);
      await run("newborn");
      // Longer than the plugin's etcd request timeout (3 s): the delete and the put fail.
      await sleep(6_000);
    } finally {
      await cluster.unpauseEtcd();
    }
    const newborn = await addressOf(h3, "newborn", MESH);
    const took = await timeUntil(
      "doomed stops and newborn starts resolving on hosts 1 and 2",
      async () => {
        for (const host of [h1, h2]) {
          const probe = host === h1 ? "probe" : "web1";
          if ((await resolveFrom(host, probe, "doomed")).length > 0) return false;
          if ((await resolveFrom(host, probe, "newborn")).join() !== newborn) return false;
        }
        return true;
      },
      5_000,
    );
    t.diagnostic(`names agreed ${took} ms after etcd returned`);
    await h3.docker(["rm", "-f", "newborn"]);
  });

  it("a host's names go when its lease expires, and come back with the host", async (t) => {
    assert.ok(cluster);
    const [h1, , h3] = hosts();
    const web2 = await addressOf(h3, "web2", MESH);
    await cluster.pauseHost(h3);
    try {
      const paused = Date.now();
      await waitFor(
        "web2 stops resolving once host 3's lease expires",
        async () => (await resolveFrom(h1, "probe", "web2")).length === 0,
        LEASE_TTL_MS + 20_000,
      );
      t.diagnostic(`web2 stopped resolving ${Date.now() - paused} ms after host 3 froze`);
    } finally {
      await cluster.unpauseHost(h3);
    }
    await waitFor(
      "web2 resolves again once host 3 registers again",
      async () => (await resolveFrom(h1, "probe", "web2")).join() === web2,
      30_000,
    );
  });

  it("names outlive a restart of their host's plugin (published again under its new lease)", async () => {
    const [h1, , h3] = hosts();
    const web2 = await addressOf(h3, "web2", MESH);
    await h3.docker(["plugin", "disable", "-f", PLUGIN]);
    await h3.docker(["plugin", "enable", PLUGIN]);
    // By now the lease of the plugin that stopped has expired, with every key still on it.
    await sleep(LEASE_TTL_MS + 3_000);
    await waitFor(
      "web2 resolves on host 1 after host 3's plugin restarted",
      async () => (await resolveFrom(h1, "probe", "web2")).join() === web2,
      10_000,
    );
    await waitFor("and web2 still reaches web1 by name", () => pingFrom(h3, "web2", "web1"));
  });

  it(`${PER_HOST} parallel runs per host, static and automatic addresses mixed: no address twice`, async () => {
    // Automatic addresses come from blocks inside --ip-range; static ones lie outside it. Each
    // host takes 10 statics, half of them also wanted by the next host: one of each such pair
    // must be refused, naming the holder.
    await Promise.all(
      hosts().map((host) =>
        createMesh(host, MIXED, "4343", "10.70.0.0/16", ["--ip-range", "10.70.0.0/17"]),
      ),
    );
    const staticOf = (hostIndex: number, index: number) =>
      `10.70.200.${1 + ((hostIndex * 5 + index) % 15)}`;
    const outcomes = await Promise.all(
      hosts().map(async (host, hostIndex) =>
        Promise.all(
          Array.from({ length: PER_HOST }, async (_, index) => {
            const name = `${host.name}-m${index}`;
            const ip = index < 10 ? ["--ip", staticOf(hostIndex, index)] : [];
            const run = await host.dockerMayFail([
              "run",
              "-d",
              "--name",
              name,
              "--network",
              MIXED,
              ...ip,
              TEST_IMAGE,
              "sleep",
              "3600",
            ]);
            return { host, name, wanted: ip[1], run };
          }),
        ),
      ),
    );
    const all = outcomes.flat();
    const running: { name: string; address: string }[] = [];
    const refused: string[] = [];
    for (const outcome of all) {
      if (outcome.run.exitCode === 0) {
        running.push({
          name: outcome.name,
          address: await addressOf(outcome.host, outcome.name, MIXED),
        });
        if (outcome.wanted !== undefined) {
          assert.equal(running.at(-1)?.address, outcome.wanted, `${outcome.name} got its --ip`);
        }
      } else {
        assert.ok(outcome.wanted, `${outcome.name} (automatic) failed: ${outcome.run.stderr}`);
        assert.match(outcome.run.stderr, /already in use on another host/, outcome.run.stderr);
        refused.push(outcome.wanted);
      }
    }
    const addresses = running.map((entry) => entry.address);
    assert.equal(
      new Set(addresses).size,
      addresses.length,
      `no address twice: ${addresses.sort().join(" ")}`,
    );
    // 30 statics wanted over 15 distinct addresses: exactly 15 run, 15 are refused.
    assert.equal(refused.length, 15, `refused: ${refused.sort().join(" ")}`);
    assert.equal(new Set(refused).size, 15);
    assert.equal(running.length, 3 * PER_HOST - 15);
    await Promise.all(
      hosts().map((host) =>
        host.dockerMayFail([
          "rm",
          "-f",
          ...Array.from({ length: PER_HOST }, (_, index) => `${host.name}-m${index}`),
        ]),
      ),
    );
  });
  it("with the plugin disabled, or its address gone from lo, lookups go on to the next server", async (t) => {
    // Regression guard: the resolver is first in every container's servers; a plugin that is
    // disabled (or removed, and the host rebooted) must not make every lookup wait.
    const [h1] = hosts();
    await h1.docker(["network", "create", "plain"]);
    await h1.docker([
      "run",
      "-d",
      "--name",
      "asker",
      "--network",
      "plain",
      TEST_IMAGE,
      "sleep",
      "600",
    ]);
    const timed = async (): Promise<number> => {
      const started = Date.now();
      assert.deepEqual(await resolveFrom(h1, "asker", UPSTREAM_NAME), [UPSTREAM_ADDRESS]);
      return Date.now() - started;
    };
    const exec = async (): Promise<number> => {
      const started = Date.now();
      await h1.docker(["exec", "asker", "true"]);
      return Date.now() - started;
    };
    try {
      const overhead = await exec();
      const enabled = await timed();
      await h1.docker(["plugin", "disable", "-f", PLUGIN]);
      const disabled = await timed();
      t.diagnostic(
        `lookup ${enabled} ms with the plugin, ${disabled} ms disabled (exec ${overhead} ms)`,
      );
      assert.ok(disabled - overhead < 1_000, `disabled: ${disabled} ms (exec ${overhead} ms)`);
      // A reboot with the plugin disabled: the address is gone from lo. The README's step (the
      // address kept on lo by the host's own network config) makes it refuse at once again.
      await h1.exec(["/usr/bin/ip", "address", "del", `${RESOLVER}/32`, "dev", "lo"]);
      await h1.exec(["/usr/bin/ip", "address", "add", `${RESOLVER}/32`, "dev", "lo"]);
      const rebooted = await timed();
      assert.ok(rebooted - overhead < 1_000, `after the README's step: ${rebooted} ms`);
    } finally {
      await h1.dockerMayFail(["plugin", "enable", PLUGIN]);
      await h1.dockerMayFail(["rm", "-f", "asker"]);
      await h1.dockerMayFail(["network", "rm", "plain"]);
    }
  });
});

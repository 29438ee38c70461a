import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { FakeHost, fetchLine } from "../support/fake-host.ts";
import { inNamespace, pings } from "../support/netns.ts";

/** A TCP server in a namespace that answers every connection with one line. */
function serve(namespace: string, port: number, line: string): ChildProcess {
  return spawn(
    "ip",
    [
      "netns",
      "exec",
      namespace,
      "busybox",
      "nc",
      "-ll",
      "-p",
      String(port),
      "-e",
      "busybox",
      "echo",
      line,
    ],
    { stdio: "ignore" },
  );
}

/** How many packets from the address reached the namespace (counted before anything else). */
function arrivals(namespace: string, from: string): number {
  const table = inNamespace(namespace, ["nft", "list", "table", "inet", "probe"]);
  const line = table.split("\n").find((item) => item.includes(`ip saddr ${from} `));
  const packets = line?.match(/counter packets (\d+)/)?.[1];
  if (packets === undefined) throw new Error(`no arrival counter for ${from} in ${namespace}`);
  return Number(packets);
}

/** Counts packets arriving in a namespace from each of the addresses. */
function countArrivals(namespace: string, from: string[]): void {
  const rules = from.map((address) => `    ip saddr ${address} counter`);
  execFileSync("ip", ["netns", "exec", namespace, "nft", "-f", "-"], {
    input: [
      "table inet probe {",
      "  chain prerouting {",
      "    type filter hook prerouting priority -300; policy accept;",
      ...rules,
      "  }",
      "}",
      "",
    ].join("\n"),
  });
}

/**
 * Regression: the SWITCHYARD iptables chain accepted everything leaving a Switchyard bridge
 * except into docker0 and br-*, so Docker networks with a custom bridge name
 * (com.docker.network.bridge.name) and docker_gwbridge were reachable past Docker's filter.
 */
describe("traffic leaving a Switchyard bridge", { timeout: 60_000 }, () => {
  let host: FakeHost;
  let app = "";
  let outside = "";

  before(async () => {
    host = new FakeHost({ bridgeNetfilter: true });
    outside = host.uplink();
    host.bridge("sy-app", "10.222.1.1/24");
    host.addNetwork("app", "sy-app", "10.222.1.0/24");
    app = host.container("sy-app", "vsy-app1", "10.222.1.2/24", "10.222.1.1");
    host.addEndpoint("app1", "app", "vsy-app1", "10.222.1.2/24");
    host.dockerBridge("custom0", "172.30.1.1/24");
    host.container("custom0", "veth-custom", "172.30.1.2/24", "172.30.1.1");
    host.dockerBridge("docker_gwbridge", "172.30.2.1/24");
    host.container("docker_gwbridge", "veth-gw", "172.30.2.2/24", "172.30.2.1");
    await host.apply();
  });

  after(() => host?.destroy());

  it("into a Docker bridge with a custom name is left to Docker, which drops it", {
    timeout: 60_000,
  }, () => {
    assert.equal(pings(app, "172.30.1.2"), false, "Switchyard container → custom0 container");
  });

  it("into docker_gwbridge is left to Docker, which drops it", { timeout: 60_000 }, () => {
    assert.equal(
      pings(app, "172.30.2.2"),
      false,
      "Switchyard container → docker_gwbridge container",
    );
  });

  it("to a non-bridge interface (the uplink) passes Docker's FORWARD DROP", {
    timeout: 60_000,
  }, () => {
    assert.equal(pings(app, "10.250.0.2"), true);
    assert.equal(pings(outside, "10.222.1.2"), false, "but the outside cannot reach in");
  });
});

/**
 * Regression: with the uplink itself a bridge (br0, as on VM hosts), traffic out of a
 * Switchyard bridge was taken for traffic into another container network and left to
 * Docker's FORWARD DROP, cutting every container off from the outside.
 */
describe("a host whose uplink is a bridge", { timeout: 60_000 }, () => {
  let host: FakeHost;
  let app = "";

  before(async () => {
    host = new FakeHost({ bridgeNetfilter: true });
    host.uplink({ bridged: true });
    host.bridge("sy-app", "10.224.1.1/24");
    host.addNetwork("app", "sy-app", "10.224.1.0/24");
    app = host.container("sy-app", "vsy-app1", "10.224.1.2/24", "10.224.1.1");
    host.addEndpoint("app1", "app", "vsy-app1", "10.224.1.2/24");
    host.dockerBridge("custom0", "172.30.1.1/24");
    host.container("custom0", "veth-custom", "172.30.1.2/24", "172.30.1.1");
    await host.apply();
  });

  after(() => host?.destroy());

  it("still lets containers out through the uplink bridge, and not into Docker's bridges", {
    timeout: 60_000,
  }, () => {
    assert.equal(pings(app, "10.250.0.2"), true, "Switchyard container → outside via br0");
    assert.equal(pings(app, "172.30.1.2"), false, "Switchyard container → custom0 container");
  });
});

/**
 * A container of an internal network must not reach a published port of another network,
 * neither through the host's address (DNAT) nor at the container's own address. The drop
 * must hold whatever order the networks' rules come in, so one internal network's bridge
 * name sorts before the publishing network's and one after.
 */
describe("internal networks and published ports", { timeout: 60_000 }, () => {
  let host: FakeHost;
  let server: ChildProcess | undefined;
  const c: Record<string, string> = {};

  before(async () => {
    host = new FakeHost({ bridgeNetfilter: true });
    host.uplink();
    const networks = [
      ["int-first", "sy-a-int", "10.223.1", true],
      ["published", "sy-b-pub", "10.223.2", false],
      ["other", "sy-c-other", "10.223.3", false],
      ["int-last", "sy-d-int", "10.223.4", true],
    ] as const;
    for (const [id, bridge, subnet, internal] of networks) {
      host.bridge(bridge, `${subnet}.1/24`);
      host.addNetwork(id, bridge, `${subnet}.0/24`, { internal });
      // Docker gives internal containers no default route; one that adds it must still fail.
      c[id] = host.container(bridge, `vsy-${id}`.slice(0, 15), `${subnet}.2/24`, `${subnet}.1`);
    }
    for (const [id, , subnet] of networks) {
      const ports =
        id === "published"
          ? [
              {
                proto: "tcp" as const,
                containerPort: 80,
                hostIp: "",
                hostPort: 8081,
                hostPortEnd: 8081,
              },
              {
                proto: "sctp" as const,
                containerPort: 90,
                hostIp: "",
                hostPort: 8082,
                hostPortEnd: 8082,
              },
              {
                proto: "sctp" as const,
                containerPort: 91,
                hostIp: "127.0.0.1",
                hostPort: 8083,
                hostPortEnd: 8083,
              },
            ]
          : [];
      host.addEndpoint(id, id, `vsy-${id}`.slice(0, 15), `${subnet}.2/24`, ports);
    }
    await host.apply();
    countArrivals(c.published ?? "", ["10.223.1.2", "10.223.4.2"]);
    server = serve(c.published ?? "", 80, "reached");
    await sleep(200);
  });

  after(() => {
    server?.kill();
    host?.destroy();
  });

  it("a container of a normal network reaches the published port through the host's address", {
    timeout: 60_000,
  }, () => {
    assert.equal(fetchLine(c.other ?? "", "10.250.0.1", 8081), "reached");
  });

  for (const id of ["int-first", "int-last"]) {
    it(`a container of an internal network (${id}) reaches neither the published port nor the container`, {
      timeout: 60_000,
    }, () => {
      assert.equal(
        fetchLine(c[id] ?? "", "10.250.0.1", 8081),
        "",
        "through the host's uplink address",
      );
      assert.equal(
        fetchLine(c[id] ?? "", "10.223.2.1", 8081),
        "",
        "through the publishing network's gateway",
      );
      assert.equal(fetchLine(c[id] ?? "", "10.223.2.2", 80), "", "at the container's own address");
      // No answer is not enough: a packet that gets in one way already carries data out.
      const source = id === "int-first" ? "10.223.1.2" : "10.223.4.2";
      assert.equal(
        arrivals(c.published ?? "", source),
        0,
        "no packet of the internal network arrives",
      );
    });
  }

  it("SCTP bindings get a DNAT rule, except loopback ones (no relay serves SCTP)", {
    timeout: 60_000,
  }, () => {
    const table = inNamespace(host.name, ["nft", "list", "table", "inet", "switchyard"]);
    assert.match(table, /sctp \. 8082 : 10\.223\.2\.2 \. 90/);
    // No accept at the container's own address: only the DNAT'ed port gets in (Docker 28).
    assert.doesNotMatch(table, /10\.223\.2\.2 \. sctp \. 90/);
    assert.doesNotMatch(table, /\. 8083\b/);
  });
});

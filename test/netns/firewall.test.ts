import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { NetworkDriver } from "../../src/driver/network-driver.ts";
import { parseNetworkOptions } from "../../src/driver/options.ts";
import { parsePortBindings } from "../../src/driver/ports.ts";
import { HostFirewall } from "../../src/firewall/host-firewall.ts";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { MemoryStore } from "../support/memory-store.ts";
import { createNamespace, inNamespace, pings, requireRoot } from "../support/netns.ts";
import { RecordingPublisher } from "../support/recording-publisher.ts";

/** The first line a TCP server at address:port sends, or "" when nothing answers. */
function fetchLine(namespace: string, address: string, port: number): string {
  try {
    return execFileSync(
      "ip",
      ["netns", "exec", namespace, "busybox", "nc", "-w", "2", address, String(port)],
      {
        encoding: "utf8",
        input: "",
      },
    ).trim();
  } catch {
    return "";
  }
}

const ip = (...argv: string[]): void => {
  execFileSync("ip", argv);
};

/**
 * A whole host in a namespace: the real driver (ip + nft + iptables) makes networks there, and
 * each "container" is a namespace holding an endpoint's peer, addressed as Docker would.
 */
describe("driver and firewall with real packets in namespaces", () => {
  let host: ReturnType<typeof createNamespace>;
  let driver: NetworkDriver;
  let firewall: HostFirewall;
  const containers: string[] = [];
  const outside = "sytest-out";

  async function network(
    id: string,
    subnet: string,
    generic: Record<string, string>,
    internal = false,
  ) {
    await driver.createNetwork({
      networkId: id.padEnd(64, "0"),
      options: parseNetworkOptions({
        "com.docker.network.generic": generic,
        "com.docker.network.internal": internal,
      }),
      ipv4: [{ pool: `${subnet}.0/24`, gateway: `${subnet}.1/24` }],
      ipv6: [],
    });
  }

  async function container(networkId: string, endpoint: string, address: string): Promise<string> {
    const networkFull = networkId.padEnd(64, "0");
    const endpointFull = endpoint.padEnd(64, "0");
    await driver.createEndpoint({
      networkId: networkFull,
      endpointId: endpointFull,
      address: `${address}/24`,
    });
    const joined = await driver.join(networkFull, endpointFull);
    const name = `${host.name}-${endpoint}`;
    ip("netns", "add", name);
    containers.push(name);
    ip("-n", host.name, "link", "set", joined.srcName, "netns", name);
    ip("-n", name, "link", "set", joined.srcName, "name", "eth0");
    ip("-n", name, "addr", "add", `${address}/24`, "dev", "eth0");
    ip("-n", name, "link", "set", "eth0", "up");
    ip("-n", name, "link", "set", "lo", "up");
    if (joined.gateway !== undefined)
      ip("-n", name, "route", "add", "default", "via", joined.gateway);
    return name;
  }

  before(async () => {
    requireRoot();
    host = createNamespace();
    inNamespace(host.name, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // Docker turns this on (br_netfilter); without it bridged traffic skips the filter.
    inNamespace(host.name, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    // What Docker leaves on a host: FORWARD policy DROP and an empty DOCKER-USER chain.
    inNamespace(host.name, ["iptables-nft", "-N", "DOCKER-USER"]);
    inNamespace(host.name, ["iptables-nft", "-A", "FORWARD", "-j", "DOCKER-USER"]);
    inNamespace(host.name, ["iptables-nft", "-P", "FORWARD", "DROP"]);
    // An outside host routed through the host, with no route back to container subnets.
    ip("netns", "add", outside);
    ip(
      "-n",
      host.name,
      "link",
      "add",
      "uplink",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      outside,
    );
    ip("-n", host.name, "addr", "add", "10.250.0.1/24", "dev", "uplink");
    ip("-n", host.name, "link", "set", "uplink", "up");
    ip("-n", outside, "addr", "add", "10.250.0.2/24", "dev", "eth0");
    ip("-n", outside, "link", "set", "eth0", "up");

    const logger = pino({ level: "silent" });
    const state = await StateManager.open(new MemoryStore(), defaultIpamSettings());
    firewall = new HostFirewall(host.runner, logger, "nft");
    driver = new NetworkDriver({
      state,
      datapath: new IpDatapath(host.runner),
      firewall,
      publisher: new RecordingPublisher(),
      logger,
    });
    await network("aaaa", "10.201.1", {});
    await network("bbbb", "10.201.2", { "com.docker.network.bridge.enable_icc": "false" });
    await network("cccc", "10.201.3", {}, true);
    await network("dddd", "10.201.4", {
      "com.docker.network.bridge.enable_ip_masquerade": "false",
    });
    await container("aaaa", "a1", "10.201.1.2");
    await container("aaaa", "a2", "10.201.1.3");
    await container("bbbb", "b1", "10.201.2.2");
    await container("bbbb", "b2", "10.201.2.3");
    await container("cccc", "c1", "10.201.3.2");
    await container("cccc", "c2", "10.201.3.3");
    await container("dddd", "d1", "10.201.4.2");
  });

  after(() => {
    for (const name of [...containers, outside]) {
      try {
        ip("netns", "del", name);
      } catch {}
    }
    host?.destroy();
  });

  const c = (endpoint: string): string => `${host.name}-${endpoint}`;

  it("containers of one network reach each other and the gateway", () => {
    assert.equal(pings(c("a1"), "10.201.1.3"), true);
    assert.equal(pings(c("a1"), "10.201.1.1"), true);
  });

  it("ICC off stops traffic inside the network but not to the outside", () => {
    assert.equal(pings(c("b1"), "10.201.2.3"), false);
    assert.equal(pings(c("b1"), "10.250.0.2"), true);
  });

  it("networks are isolated from each other", () => {
    assert.equal(pings(c("a1"), "10.201.2.2"), false);
    assert.equal(pings(c("b1"), "10.201.1.2"), false);
    assert.equal(pings(c("d1"), "10.201.1.2"), false);
  });

  it("internal networks talk inside only", () => {
    assert.equal(pings(c("c1"), "10.201.3.3"), true);
    assert.equal(pings(c("c1"), "10.250.0.2"), false);
    assert.equal(pings(c("a1"), "10.201.3.2"), false);
  });

  it("outbound traffic is masqueraded (the outside host has no route back), unless turned off", {
    timeout: 60_000,
  }, () => {
    assert.equal(pings(c("a1"), "10.250.0.2"), true);
    assert.equal(pings(c("d1"), "10.250.0.2"), false, "unmasqueraded source has no way back");
    ip("-n", outside, "route", "add", "10.201.4.0/24", "via", "10.250.0.1");
    // As with Docker 28: replies routed to the container's own address from another
    // interface are dropped, so an unmasqueraded network gets no answer from outside.
    assert.equal(
      pings(c("d1"), "10.250.0.2"),
      false,
      "even with a route back, nothing reaches the container's own address from outside",
    );
  });

  it("the outside cannot open connections to containers", () => {
    ip("-n", outside, "route", "add", "10.201.1.0/24", "via", "10.250.0.1");
    assert.equal(pings(outside, "10.201.1.2"), false);
  });

  it("a published port is reachable from outside through the host's address, and revoked", async () => {
    const a1 = "a1".padEnd(64, "0");
    const network = "aaaa".padEnd(64, "0");
    await driver.programExternalConnectivity(
      network,
      a1,
      parsePortBindings({
        "com.docker.network.portmap": [
          { Proto: 6, IP: "", Port: 80, HostIP: "", HostPort: 8081, HostPortEnd: 8081 },
        ],
      }),
    );
    const server = spawn("ip", [
      "netns",
      "exec",
      c("a1"),
      "busybox",
      "nc",
      "-l",
      "-p",
      "80",
      "-e",
      "busybox",
      "echo",
      "reached",
    ]);
    try {
      await sleep(200);
      assert.equal(fetchLine(outside, "10.250.0.1", 8081), "reached");
      assert.match(
        inNamespace(host.name, ["nft", "list", "table", "inet", "switchyard"]),
        /tcp \. 8081 : 10\.201\.1\.2 \. 80/,
      );
      await driver.revokeExternalConnectivity(network, a1);
      assert.doesNotMatch(
        inNamespace(host.name, ["nft", "list", "table", "inet", "switchyard"]),
        /\. 8081 :/,
      );
      assert.equal(fetchLine(outside, "10.250.0.1", 8081), "", "revoked: nothing answers");
    } finally {
      server.kill();
    }
  });

  it("removing every network leaves no table, chain, bridge or veth behind", async () => {
    for (const id of ["aaaa", "bbbb", "cccc", "dddd"])
      await driver.deleteNetwork(id.padEnd(64, "0"));
    assert.doesNotMatch(
      inNamespace(host.name, ["nft", "list", "ruleset"]),
      /switchyard|SWITCHYARD/,
    );
    assert.equal(
      inNamespace(host.name, ["iptables-nft", "-S", "DOCKER-USER"]).trim(),
      "-N DOCKER-USER",
    );
    const links = inNamespace(host.name, ["ip", "-br", "link"]);
    assert.doesNotMatch(links, /sy-|vsy/);
  });
});

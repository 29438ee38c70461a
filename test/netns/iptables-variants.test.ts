import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { afterEach, describe, it } from "node:test";
import { pino } from "pino";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { NetworkDriver } from "../../src/driver/network-driver.ts";
import { parseNetworkOptions } from "../../src/driver/options.ts";
import type { Runner } from "../../src/exec/runner.ts";
import { detectDockerFirewall } from "../../src/firewall/docker-backend.ts";
import { HostFirewall } from "../../src/firewall/host-firewall.ts";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { HostWarnings } from "../../src/warnings.ts";
import { MemoryStore } from "../support/memory-store.ts";
import { createNamespace, inNamespace, pings, requireRoot } from "../support/netns.ts";
import { RecordingPublisher } from "../support/recording-publisher.ts";

const NETWORK = "abcd".padEnd(64, "0");
const ip = (...argv: string[]): void => {
  execFileSync("ip", argv);
};

/**
 * Docker programs iptables-nft on some hosts and iptables-legacy on others; rules put in the
 * other one are never consulted before Docker's FORWARD DROP (a classic failure of peer
 * plugins). Each variant gets a namespace that looks like a Docker host using it.
 */
describe("iptables-nft and iptables-legacy hosts", () => {
  const namespaces: string[] = [];
  afterEach(() => {
    for (const name of namespaces.splice(0).reverse()) {
      try {
        ip("netns", "del", name);
      } catch {}
    }
  });

  for (const variant of ["nft", "legacy"] as const) {
    it(`detects a Docker host on iptables-${variant} and lets bridge traffic through it`, async () => {
      requireRoot();
      const host = createNamespace();
      namespaces.push(host.name);
      const iptables = `iptables-${variant}`;
      inNamespace(host.name, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
      inNamespace(host.name, [iptables, "-N", "DOCKER-USER"]);
      inNamespace(host.name, [iptables, "-A", "FORWARD", "-j", "DOCKER-USER"]);
      inNamespace(host.name, [iptables, "-P", "FORWARD", "DROP"]);
      assert.equal(await detectDockerFirewall(host.runner), `iptables-${variant}`);

      const driver = await twoContainers(host.name, host.runner, namespaces);
      assert.match(inNamespace(host.name, [iptables, "-S", "DOCKER-USER"]), /-j SWITCHYARD/);
      assert.equal(
        pings(`${host.name}-one`, "10.202.1.3"),
        true,
        "bridged traffic passes FORWARD DROP",
      );

      await driver.deleteNetwork(NETWORK);
      assert.equal(
        inNamespace(host.name, [iptables, "-S", "DOCKER-USER"]).trim(),
        "-N DOCKER-USER",
      );
    });
  }

  it("on a Docker 29 nftables-mode host: no iptables rule at all, and a warning for FORWARD DROP", async () => {
    requireRoot();
    const host = createNamespace();
    namespaces.push(host.name);
    inNamespace(host.name, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    // What Docker 29's nftables backend makes: its own tables, no DOCKER-USER anywhere.
    inNamespace(host.name, ["nft", "add", "table", "ip", "docker-bridges"]);
    const warnings = new HostWarnings();
    const driver = await twoContainers(host.name, host.runner, namespaces, warnings);
    assert.equal(pings(`${host.name}-one`, "10.202.1.3"), true, "FORWARD ACCEPT: traffic passes");
    for (const iptables of ["iptables-nft", "iptables-legacy"]) {
      const rules = inNamespace(host.name, [iptables, "-S"]);
      assert.doesNotMatch(rules, /SWITCHYARD|DOCKER-USER/, `${iptables}: ${rules}`);
    }
    assert.deepEqual(warnings.list(), []);

    // An iptables-mode daemon ran before: FORWARD DROP breaks every bridge (Docker's too).
    inNamespace(host.name, ["iptables-nft", "-P", "FORWARD", "DROP"]);
    const second = "abce".padEnd(64, "0");
    await driver.createNetwork({
      networkId: second,
      options: parseNetworkOptions({}),
      ipv4: [{ pool: "10.202.2.0/24", gateway: "10.202.2.1/24" }],
      ipv6: [],
    });
    const [warning] = warnings.list();
    assert.match(warning ?? "", /iptables FORWARD policy is DROP \(iptables-nft;/);
    assert.match(warning ?? "", /Fix: iptables -P FORWARD ACCEPT/);
    assert.doesNotMatch(inNamespace(host.name, ["iptables-nft", "-S"]), /SWITCHYARD|DOCKER-USER/);
    await driver.deleteNetwork(second);
    await driver.deleteNetwork(NETWORK);
  });

  it("follows a daemon restarted with nftables where an iptables-mode one left DOCKER-USER", async () => {
    requireRoot();
    const host = createNamespace();
    namespaces.push(host.name);
    inNamespace(host.name, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    // An iptables-mode daemon: DOCKER-USER; Switchyard puts its chain behind it.
    inNamespace(host.name, ["iptables-nft", "-N", "DOCKER-USER"]);
    inNamespace(host.name, ["iptables-nft", "-I", "FORWARD", "-j", "DOCKER-USER"]);
    const state = await StateManager.open(new MemoryStore(), defaultIpamSettings());
    const driver = await twoContainers(host.name, host.runner, namespaces, undefined, state);
    assert.match(inNamespace(host.name, ["iptables-nft", "-S"]), /-A DOCKER-USER -j SWITCHYARD/);

    // dockerd restarted with --firewall-backend=nftables: its tables appear, DOCKER-USER
    // stays (nftables-mode Docker leaves it). The next network made is a full rebuild.
    inNamespace(host.name, ["nft", "add", "table", "ip", "docker-bridges"]);
    const second = "abcf".padEnd(64, "0");
    await driver.createNetwork({
      networkId: second,
      options: parseNetworkOptions({}),
      ipv4: [{ pool: "10.202.3.0/24", gateway: "10.202.3.1/24" }],
      ipv6: [],
    });
    assert.doesNotMatch(inNamespace(host.name, ["iptables-nft", "-S"]), /SWITCHYARD/);
    assert.equal(pings(`${host.name}-one`, "10.202.1.3"), true, "traffic still passes");

    // A fresh plugin process on that host (restarted plugin) finds nftables at once even
    // though DOCKER-USER is there, and sweeps a chain of ours an older process left.
    inNamespace(host.name, ["iptables-nft", "-N", "SWITCHYARD"]);
    inNamespace(host.name, ["iptables-nft", "-I", "DOCKER-USER", "-j", "SWITCHYARD"]);
    const fresh = new HostFirewall(host.runner, pino({ level: "silent" }));
    await fresh.apply(state.document);
    assert.doesNotMatch(inNamespace(host.name, ["iptables-nft", "-S"]), /SWITCHYARD/);
    await driver.deleteNetwork(second);
    await driver.deleteNetwork(NETWORK);
  });
});

/** A Switchyard network in `host` with containers `one` (10.202.1.2) and `two` (.3). */
async function twoContainers(
  hostName: string,
  runner: Runner,
  namespaces: string[],
  warnings = new HostWarnings(),
  state?: StateManager,
): Promise<NetworkDriver> {
  const host = { name: hostName, runner };
  const logger = pino({ level: "silent" });
  const driver = new NetworkDriver({
    state: state ?? (await StateManager.open(new MemoryStore(), defaultIpamSettings())),
    datapath: new IpDatapath(host.runner),
    firewall: new HostFirewall(host.runner, logger, undefined, warnings),
    publisher: new RecordingPublisher(),
    logger,
  });
  await driver.createNetwork({
    networkId: NETWORK,
    options: parseNetworkOptions({}),
    ipv4: [{ pool: "10.202.1.0/24", gateway: "10.202.1.1/24" }],
    ipv6: [],
  });
  for (const [name, address] of [
    ["one", "10.202.1.2"],
    ["two", "10.202.1.3"],
  ] as const) {
    const endpointId = name.padEnd(64, "0");
    await driver.createEndpoint({
      networkId: NETWORK,
      endpointId,
      address: `${address}/24`,
    });
    const joined = await driver.join(NETWORK, endpointId);
    const container = `${host.name}-${name}`;
    ip("netns", "add", container);
    namespaces.push(container);
    ip("-n", host.name, "link", "set", joined.srcName, "netns", container);
    ip("-n", container, "addr", "add", `${address}/24`, "dev", joined.srcName);
    ip("-n", container, "link", "set", joined.srcName, "up");
  }
  return driver;
}

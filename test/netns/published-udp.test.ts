import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { NetworkDriver } from "../../src/driver/network-driver.ts";
import { parseNetworkOptions } from "../../src/driver/options.ts";
import { parsePortBindings } from "../../src/driver/ports.ts";
import type { Runner } from "../../src/exec/runner.ts";
import { HostFirewall } from "../../src/firewall/host-firewall.ts";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { MemoryStore } from "../support/memory-store.ts";
import { createNamespace, inNamespace, requireRoot } from "../support/netns.ts";
import { RecordingPublisher } from "../support/recording-publisher.ts";

const ip = (...argv: string[]): void => {
  execFileSync("ip", argv);
};

const NETWORK = "udp1".padEnd(64, "0");
const SUBNET = "10.241.1";
const UPLINK = "10.251.0";
const HOST_PORT = 5353;

/** A UDP listener in a namespace: every datagram it gets, with the time it came. */
function udpListener(namespace: string, port: number) {
  const received: { at: number; text: string }[] = [];
  const script = `const s = require("node:dgram").createSocket("udp4");
s.on("message", (m) => process.stdout.write(m + "\\n"));
s.bind(${port}, () => process.stdout.write("listening\\n"));`;
  const child = spawn("ip", ["netns", "exec", namespace, process.execPath, "-e", script]);
  let buffered = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const text of lines) received.push({ at: performance.now(), text });
  });
  return { child, received };
}

/** A steady sender: one socket (so one conntrack entry), a datagram every 20 ms. */
function steadySender(namespace: string, address: string, port: number): ChildProcess {
  const script = `const s = require("node:dgram").createSocket("udp4");
let i = 0;
s.bind(40123, () => setInterval(() => s.send(String(i++), ${port}, "${address}"), 20));`;
  return spawn("ip", ["netns", "exec", namespace, process.execPath, "-e", script], {
    stdio: "ignore",
  });
}

/** Waits until a listener has something after `since`; answers how long that took, or undefined. */
async function heardWithin(
  listener: ReturnType<typeof udpListener>,
  since: number,
  ms: number,
): Promise<number | undefined> {
  const deadline = since + ms;
  while (performance.now() < deadline) {
    const first = listener.received.find((entry) => entry.at > since && entry.text !== "listening");
    if (first !== undefined) return first.at - since;
    await sleep(10);
  }
  return undefined;
}

function requireConntrack(): void {
  try {
    execFileSync("sh", ["-c", "command -v conntrack"], { stdio: "ignore" });
  } catch {
    throw new Error("this test needs the conntrack tool: apt-get install -y conntrack");
  }
}

/**
 * A published UDP port that moves to another container. Regression: Switchyard did not
 * delete the conntrack entries of the host port when it published or revoked a UDP port (as
 * Docker's bridge does), so a steady sender's flow stayed translated to the old container, or
 * untranslated, for as long as it kept sending.
 */
describe("published UDP ports and the conntrack table", { timeout: 120_000 }, () => {
  let host: ReturnType<typeof createNamespace>;
  let driver: NetworkDriver;
  const store = new MemoryStore();
  let runner: Runner;
  let sender: ChildProcess | undefined;
  let listenerA: ReturnType<typeof udpListener> | undefined;
  const namespaces: string[] = [];
  const children: ChildProcess[] = [];
  const warnings: unknown[] = [];
  let brokenConntrack = false;

  async function container(endpoint: string, address: string): Promise<string> {
    const endpointId = endpoint.padEnd(64, "0");
    await driver.createEndpoint({ networkId: NETWORK, endpointId, address: `${address}/24` });
    const joined = await driver.join(NETWORK, endpointId);
    const name = `${host.name}-${endpoint}`;
    ip("netns", "add", name);
    namespaces.push(name);
    ip("-n", host.name, "link", "set", joined.srcName, "netns", name);
    ip("-n", name, "link", "set", joined.srcName, "name", "eth0");
    ip("-n", name, "addr", "add", `${address}/24`, "dev", "eth0");
    ip("-n", name, "link", "set", "eth0", "up");
    ip("-n", name, "link", "set", "lo", "up");
    if (joined.gateway !== undefined)
      ip("-n", name, "route", "add", "default", "via", joined.gateway);
    return name;
  }

  const publish = (endpoint: string) =>
    driver.programExternalConnectivity(
      NETWORK,
      endpoint.padEnd(64, "0"),
      parsePortBindings({
        "com.docker.network.portmap": [
          { Proto: 17, Port: 53, HostIP: "", HostPort: HOST_PORT, HostPortEnd: HOST_PORT },
        ],
      }),
    );

  before(async () => {
    requireRoot();
    requireConntrack();
    host = createNamespace();
    inNamespace(host.name, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // What Docker's default bridge puts on a host: a rule that keeps conntrack on in this
    // namespace whatever Switchyard's own tables hold (a reboot empties them, not Docker's).
    inNamespace(host.name, [
      ...["iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16"],
      ...["!", "-o", "docker0", "-j", "MASQUERADE"],
    ]);
    const outside = `${host.name}-out`;
    ip("netns", "add", outside);
    namespaces.push(outside);
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
    ip("-n", host.name, "addr", "add", `${UPLINK}.1/24`, "dev", "uplink");
    ip("-n", host.name, "link", "set", "uplink", "up");
    ip("-n", outside, "addr", "add", `${UPLINK}.2/24`, "dev", "eth0");
    ip("-n", outside, "link", "set", "eth0", "up");
    const logger = pino({ level: "silent" });
    logger.warn = ((...args: unknown[]) => {
      warnings.push(args);
    }) as typeof logger.warn;
    // conntrack as a host without its netlink support answers it, when a test asks for that.
    runner = (argv, options) =>
      brokenConntrack && argv[0] === "conntrack"
        ? host.runner(
            [
              "sh",
              "-c",
              "echo 'conntrack v1.4.7 (conntrack-tools): Operation failed: not supported' >&2; exit 1",
            ],
            options,
          )
        : host.runner(argv, options);
    driver = new NetworkDriver({
      state: await StateManager.open(store, defaultIpamSettings()),
      datapath: new IpDatapath(runner),
      firewall: new HostFirewall(host.runner, logger, "nft"),
      publisher: new RecordingPublisher(),
      logger,
    });
    await driver.createNetwork({
      networkId: NETWORK,
      options: parseNetworkOptions({}),
      ipv4: [{ pool: `${SUBNET}.0/24`, gateway: `${SUBNET}.1/24` }],
      ipv6: [],
    });
  });

  after(() => {
    for (const child of children) child.kill();
    for (const name of namespaces) {
      try {
        ip("netns", "del", name);
      } catch {}
    }
    host?.destroy();
  });

  it("a steady sender reaches the new container within a second of the move", async () => {
    const a = udpListener(await container("a1", `${SUBNET}.2`), 53);
    listenerA = a;
    const b = udpListener(await container("b1", `${SUBNET}.3`), 53);
    children.push(a.child, b.child);
    await publish("a1");
    const started = performance.now();
    sender = steadySender(`${host.name}-out`, `${UPLINK}.1`, HOST_PORT);
    children.push(sender);
    assert.notEqual(
      await heardWithin(a, started, 5_000),
      undefined,
      "container A gets the datagrams",
    );

    await driver.revokeExternalConnectivity(NETWORK, "a1".padEnd(64, "0"));
    await publish("b1");
    const moved = performance.now();
    const tookMs = await heardWithin(b, moved, 1_000);
    assert.notEqual(tookMs, undefined, "container B gets the sender's datagrams within 1 s");
    await sleep(200);
    const late = a.received.filter((entry) => entry.at > moved + 100);
    assert.deepEqual(late, [], "container A no longer gets them");
  });

  it("a port whose conntrack entries cannot be deleted is published and revoked anyway", async () => {
    brokenConntrack = true;
    try {
      const before = warnings.length;
      await driver.revokeExternalConnectivity(NETWORK, "b1".padEnd(64, "0"));
      await publish("a1");
      const table = inNamespace(host.name, ["nft", "list", "table", "inet", "switchyard"]);
      assert.ok(
        table.includes(`udp . ${HOST_PORT} : ${SUBNET}.2 . 53`),
        "published in the DNAT map",
      );
      assert.equal(warnings.length, before + 2, "each failed deletion is logged");
    } finally {
      brokenConntrack = false;
    }
  });

  // A reboot empties the packet filter and the conntrack table, but not the network: a
  // sender that goes on meanwhile gets an untranslated entry to the host, which outlives the
  // DNAT the plugin puts back unless start-up deletes it once the packet filter is rebuilt.
  it("after a reboot, a steady sender reaches the container once the plugin has reconciled", async () => {
    assert.ok(sender !== undefined && listenerA !== undefined, "the first test left A publishing");
    const a = listenerA;
    inNamespace(host.name, ["nft", "delete", "table", "inet", "switchyard"]);
    inNamespace(host.name, ["conntrack", "-F"]);
    const rebooted = performance.now();
    await sleep(300);
    assert.equal(
      a.received.some((entry) => entry.at > rebooted + 100),
      false,
      "nothing reaches A while the packet filter is empty",
    );
    const logger = pino({ level: "silent" });
    const restarted = new NetworkDriver({
      state: await StateManager.open(store, defaultIpamSettings()),
      datapath: new IpDatapath(runner),
      firewall: new HostFirewall(runner, logger, "nft"),
      publisher: new RecordingPublisher(),
      logger,
    });
    await Promise.all([restarted.reconcile(), restarted.restorePublishedPorts()]);
    restarted.stop();
    const reconciled = performance.now();
    assert.notEqual(
      await heardWithin(a, reconciled, 1_000),
      undefined,
      "A gets the sender's datagrams within 1 s of start-up",
    );
  });
});

// Regression: the resolver's address (on the host's lo) took DNS from anywhere: a neighbour on
// the LAN could route to it through this host and make the plugin's event loop answer, or
// flood it. Only this host may now reach it: the host itself, the containers of its multi-host
// networks (from their own bridge), and those of its other container networks, which must get
// REFUSED at once rather than a drop (every container of the host asks this resolver first).
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { renderNftables } from "../../src/firewall/render.ts";
import { emptyState } from "../../src/state/model.ts";
import { FakeHost } from "../support/fake-host.ts";
import { inNamespace } from "../support/netns.ts";

const RESOLVER = "169.254.53.53";
/** An address of the multi-host network's subnet, given to the outside host (a forgery). */
const FORGED = "10.227.2.99";

/** What the packets to the resolver that got past Switchyard's chains add up to. */
const COUNTING = `table inet sytest_resolver {
  counter passed {}
  chain input {
    type filter hook input priority 10; policy accept;
    ip daddr ${RESOLVER} udp dport 53 counter name "passed"
  }
}
`;

async function until(what: string, check: () => boolean, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A query for web1 A, with RD set. */
const QUERY = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 119, 101, 98, 49, 0, 0, 1, 0, 1];

/**
 * Asks the resolver over UDP from a namespace, from `source` (the kernel's choice if
 * undefined): "rcode N answers M", or "timeout" after 1.5 s.
 */
function askUdp(namespace: string, source?: string): string {
  const script = `
    const socket = require("node:dgram").createSocket("udp4");
    setTimeout(() => { console.log("timeout"); process.exit(0); }, 1500);
    socket.on("message", (reply) => {
      console.log("rcode " + (reply[3] & 15) + " answers " + reply.readUInt16BE(6));
      process.exit(0);
    });
    socket.bind(0, ${JSON.stringify(source ?? "0.0.0.0")}, () =>
      socket.send(Buffer.from(${JSON.stringify(QUERY)}), 53, "${RESOLVER}"));`;
  return execFileSync("ip", ["netns", "exec", namespace, process.execPath, "-e", script], {
    encoding: "utf8",
  }).trim();
}

/** The same over TCP: "rcode N answers M", or "timeout" when no connection or reply in 1.5 s. */
function askTcp(namespace: string, source: string): string {
  const script = `
    const query = Buffer.from(${JSON.stringify([0, QUERY.length, ...QUERY])});
    const socket = require("node:net").connect({ host: "${RESOLVER}", port: 53, localAddress: "${source}" });
    setTimeout(() => { console.log("timeout"); process.exit(0); }, 1500);
    socket.on("error", () => { console.log("error"); process.exit(0); });
    socket.on("connect", () => socket.write(query));
    socket.on("data", (reply) => {
      console.log("rcode " + (reply[5] & 15) + " answers " + reply.readUInt16BE(8));
      process.exit(0);
    });`;
  return execFileSync("ip", ["netns", "exec", namespace, process.execPath, "-e", script], {
    encoding: "utf8",
  }).trim();
}

/** Sends `count` queries from `source` as fast as it can; returns the seconds it took. */
function flood(namespace: string, source: string, count: number): number {
  const script = `
    const socket = require("node:dgram").createSocket("udp4");
    const query = Buffer.from(${JSON.stringify(QUERY)});
    const started = process.hrtime.bigint();
    socket.bind(0, "${source}", () => {
      let left = ${count};
      const next = () => {
        if (left-- > 0) return socket.send(query, 53, "${RESOLVER}", next);
        console.log(Number(process.hrtime.bigint() - started) / 1e9);
        socket.close();
      };
      next();
    });`;
  return Number(
    execFileSync("ip", ["netns", "exec", namespace, process.execPath, "-e", script], {
      encoding: "utf8",
    }).trim(),
  );
}

describe("the resolver's address answers only this host", { timeout: 120_000 }, () => {
  let host: FakeHost;
  let outside = "";
  let multiHost = "";
  let otherNetwork = "";
  let responder: ChildProcess | undefined;
  const asked: string[] = [];

  const passed = (): number => {
    const listed = JSON.parse(
      inNamespace(host.name, ["nft", "-j", "list", "counter", "inet", "sytest_resolver", "passed"]),
    ) as { nftables: { counter?: { packets: number } }[] };
    return listed.nftables.find((item) => item.counter !== undefined)?.counter?.packets ?? -1;
  };

  before(async () => {
    host = new FakeHost({ bridgeNetfilter: true });
    inNamespace(host.name, ["ip", "addr", "add", `${RESOLVER}/32`, "dev", "lo"]);
    outside = host.uplink();
    inNamespace(outside, ["ip", "addr", "add", `${FORGED}/32`, "dev", "eth0"]);
    inNamespace(outside, ["ip", "route", "add", `${RESOLVER}/32`, "via", "10.250.0.1"]);
    // A multi-host network of Switchyard's, and a container network that is not (docker0).
    host.bridge("sy-rmh", "10.227.2.1/24");
    host.addNetwork("mesh", "sy-rmh", "10.227.2.0/24", { vxlanId: 4242 });
    multiHost = host.container("sy-rmh", "vsy-rmh1", "10.227.2.2/24", "10.227.2.1");
    host.addEndpoint("m1", "mesh", "vsy-rmh1", "10.227.2.2/24");
    host.bridge("docker9", "10.227.3.1/24");
    otherNetwork = host.container("docker9", "veth-dk1", "10.227.3.2/24", "10.227.3.1");

    // What HostFirewall will apply once it is given the resolver's address.
    const script = renderNftables(host.state, {
      bridgeMeta: true,
      uplinks: ["uplink"],
      resolverAddress: RESOLVER,
    });
    execFileSync("ip", ["netns", "exec", host.name, "nft", "-f", "-"], { input: script });
    execFileSync("ip", ["netns", "exec", host.name, "nft", "-f", "-"], { input: COUNTING });

    const path = fileURLToPath(new URL("./dns-responder.ts", import.meta.url));
    responder = spawn("ip", ["netns", "exec", host.name, process.execPath, path, RESOLVER], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = createInterface({ input: responder.stdout as NodeJS.ReadableStream });
    const ready = new Promise<void>((resolve, reject) => {
      responder?.once("exit", (code) => reject(new Error(`responder exited with ${code}`)));
      lines.on("line", (line) => {
        if (line === "ready") resolve();
        else asked.push((JSON.parse(line) as { client: string }).client);
      });
    });
    await ready;
  });

  after(async () => {
    if (responder?.exitCode === null) {
      const exited = once(responder, "exit");
      responder.kill("SIGTERM");
      await exited;
    }
    host?.destroy();
  });

  it("answers a container of a multi-host network, over UDP and TCP", {
    timeout: 60_000,
  }, async () => {
    assert.equal(askUdp(multiHost, "10.227.2.2"), "rcode 0 answers 1");
    assert.equal(askTcp(multiHost, "10.227.2.2"), "rcode 0 answers 1");
    // The responder's lines arrive once this test lets the event loop run.
    await until("the responder to report the client", () => asked.includes("10.227.2.2"));
  });

  it("answers the host itself", { timeout: 60_000 }, () => {
    assert.equal(askUdp(host.name), "rcode 0 answers 1");
  });

  it("lets another container network of the host reach it, for a reply at once", {
    timeout: 60_000,
  }, () => {
    assert.equal(askUdp(otherNetwork, "10.227.3.2"), "rcode 0 answers 1");
  });

  it("drops what comes from outside, and a container address forged outside", {
    timeout: 60_000,
  }, async () => {
    const before = passed();
    assert.equal(askUdp(outside, "10.250.0.2"), "timeout");
    assert.equal(askUdp(outside, FORGED), "timeout");
    assert.equal(askTcp(outside, "10.250.0.2"), "timeout");
    assert.equal(passed() - before, 0, "nothing from outside reached the socket");
    await sleep(200);
    assert.ok(!asked.includes("10.250.0.2") && !asked.includes(FORGED));
  });

  it("the guard alone, before the first network, is a script nft takes", {
    timeout: 60_000,
  }, () => {
    const script = renderNftables(emptyState(), {
      bridgeMeta: true,
      uplinks: ["uplink"],
      resolverAddress: RESOLVER,
    });
    // -c: checked by the kernel and aborted, so the rules under test stay as they are.
    execFileSync("ip", ["netns", "exec", host.name, "nft", "-c", "-f", "-"], { input: script });
  });

  it("cuts a flood from one client in the kernel, and its neighbours are still answered", {
    timeout: 60_000,
  }, () => {
    const before = passed();
    const seconds = flood(otherNetwork, "10.227.3.2", 3_000);
    const through = passed() - before;
    // A burst of 400, then 200 a second: what the packet filter lets past to the socket.
    assert.ok(through >= 400, `${through} passed`);
    assert.ok(through < 3_000, `${through} passed`);
    assert.ok(through <= 400 + Math.ceil(200 * (seconds + 0.5)), `${through} in ${seconds} s`);
    assert.equal(askUdp(multiHost, "10.227.2.2"), "rcode 0 answers 1");
  });
});

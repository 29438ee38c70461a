import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import type { Runner } from "../../src/exec/runner.ts";
import { HostFirewall } from "../../src/firewall/host-firewall.ts";
import {
  type EndpointRecord,
  emptyState,
  type NetworkRecord,
  type PortBinding,
  type StateDocument,
} from "../../src/state/model.ts";
import { createNamespace, inNamespace, requireRoot } from "../support/netns.ts";

function network(id: string, bridge: string, subnet: string, internal = false): NetworkRecord {
  return {
    id,
    bridge,
    bridgeOwned: true,
    ipv4: [{ pool: `${subnet}.0/24`, gateway: `${subnet}.1/24` }],
    ipv6: [],
    internal,
    enableIpv6: false,
    icc: true,
    masquerade: true,
    options: {},
  };
}

function endpoint(id: string, networkId: string, address: string): EndpointRecord {
  return {
    id,
    networkId,
    hostVeth: `vsy${id}`,
    peerVeth: `csy${id}`,
    mac: "02:42:0a:00:00:02",
    address: `${address}/24`,
    ports: [],
  };
}

const tcp = (hostPort: number, containerPort: number, hostIp = ""): PortBinding => ({
  proto: "tcp",
  containerPort,
  hostIp,
  hostPort,
  hostPortEnd: hostPort,
});

/**
 * `nft list table` without what depends on history rather than content: rule handles, and
 * the order the kernel lists set elements in (a hash set's order is its own).
 */
function normalised(text: string): string {
  return text
    .replace(/ # handle \d+/g, "")
    .replace(/elements = \{([^}]*)\}/g, (_match, items: string) => {
      const sorted = items
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== "")
        .sort();
      return `elements = { ${sorted.join(", ")} }`;
    });
}

const listTables = (namespace: string): string =>
  ["inet", "bridge"]
    .map((family) => {
      try {
        const argv = ["netns", "exec", namespace, "nft", "list", "table", family, "switchyard"];
        return normalised(
          execFileSync("ip", argv, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }),
        );
      } catch {
        return `(no ${family} table)`;
      }
    })
    .join("\n");

/**
 * Publishing and revoking ports is an element transaction, not a rebuild. It must
 * leave exactly the ruleset a full rebuild of the same state gives, or the two paths drift.
 */
describe("incremental nftables updates", { timeout: 120_000 }, () => {
  let incremental: ReturnType<typeof createNamespace>;
  let rebuilt: ReturnType<typeof createNamespace>;
  const scripts: string[] = [];
  let firewall: HostFirewall;
  const state: StateDocument = emptyState();

  before(() => {
    requireRoot();
    incremental = createNamespace();
    rebuilt = createNamespace();
    const recording: Runner = (argv, options) => {
      if (argv[0] === "nft" && options?.input !== undefined) scripts.push(options.input);
      return incremental.runner(argv, options);
    };
    firewall = new HostFirewall(recording, pino({ level: "silent" }), "nft");
    state.networks.n1 = network("n1", "sy-inc-one", "10.231.1");
    state.networks.n2 = network("n2", "sy-inc-two", "10.231.2");
    state.networks.n3 = network("n3", "sy-inc-int", "10.231.3", true);
    state.endpoints.a = endpoint("a", "n1", "10.231.1.2");
    state.endpoints.b = endpoint("b", "n2", "10.231.2.2");
    state.endpoints.c = endpoint("c", "n3", "10.231.3.2");
  });

  after(() => {
    incremental?.destroy();
    rebuilt?.destroy();
  });

  /** Applies the state incrementally, rebuilds it from scratch elsewhere, compares the two. */
  async function step(what: string, expect: "full" | "elements" | "nothing"): Promise<void> {
    const before = scripts.length;
    await firewall.apply(state);
    const written = scripts.slice(before).filter((script) => !script.includes("-probe"));
    if (expect === "nothing") assert.deepEqual(written, [], `${what}: nothing to apply`);
    else if (expect === "elements") {
      assert.equal(written.length, 1, `${what}: one transaction`);
      assert.match(written[0] ?? "", /^(add|delete) element inet switchyard /, what);
      assert.doesNotMatch(written[0] ?? "", /table/, `${what}: no rebuild`);
    } else assert.match(written.join(""), /delete table inet switchyard/, `${what}: rebuild`);
    const fresh = new HostFirewall(rebuilt.runner, pino({ level: "silent" }), "nft");
    await fresh.apply(state);
    assert.equal(listTables(incremental.name), listTables(rebuilt.name), what);
  }

  it("start-up is a full rebuild", async () => {
    await step("first apply", "full");
  });

  it("publishing, changing and revoking ports changes elements only, ending as a rebuild would", async () => {
    (state.endpoints.a as EndpointRecord).ports = [tcp(8081, 80), tcp(8082, 81)];
    await step("publish two ports", "elements");
    (state.endpoints.b as EndpointRecord).ports = [tcp(9090, 90, "10.0.0.5"), tcp(9091, 91)];
    await step("publish on a host address", "elements");
    (state.endpoints.a as EndpointRecord).ports = [tcp(8081, 8080)];
    await step("same host port, another container port", "elements");
    (state.endpoints.c as EndpointRecord).ports = [tcp(7070, 70)];
    await step("an internal network publishes nothing", "nothing");
    (state.endpoints.a as EndpointRecord).ports = [];
    delete state.endpoints.b;
    await step("revoke and forget", "elements");
  });

  it("a network made or removed is a full rebuild", async () => {
    state.networks.n4 = network("n4", "sy-inc-four", "10.231.4");
    state.endpoints.d = { ...endpoint("d", "n4", "10.231.4.2"), ports: [tcp(6060, 60)] };
    await step("network added", "full");
    (state.endpoints.d as EndpointRecord).ports = [tcp(6061, 60)];
    await step("then a port change", "elements");
    delete state.networks.n4;
    delete state.endpoints.d;
    await step("network removed", "full");
  });

  it("an element update that fails (the table changed behind its back) is repaired by a rebuild", async () => {
    (state.endpoints.a as EndpointRecord).ports = [tcp(8085, 85)];
    await step("publish", "elements");
    inNamespace(incremental.name, ["nft", "flush", "map", "inet", "switchyard", "published"]);
    // Deleting the element someone else removed fails: the firewall rebuilds instead.
    (state.endpoints.a as EndpointRecord).ports = [];
    await step("revoke after an outside flush", "full");
  });
});

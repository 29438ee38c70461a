import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import {
  publishedElements,
  renderIptables,
  renderNftables,
  renderNftStructure,
  renderPublishedUpdate,
} from "../../src/firewall/render.ts";
import {
  type EndpointRecord,
  emptyState,
  type NetworkRecord,
  type StateDocument,
} from "../../src/state/model.ts";
import { networkRecord } from "../support/records.ts";

const network = networkRecord;

function state(...networks: NetworkRecord[]): StateDocument {
  const document = emptyState();
  for (const item of networks) document.networks[item.id] = item;
  return document;
}

/** An endpoint of `networkId` as the driver records it; `extra` overrides any field. */
function endpoint(
  id: string,
  networkId: string,
  extra: Partial<EndpointRecord> = {},
): EndpointRecord {
  return {
    id,
    networkId,
    hostVeth: `vsy${id}`,
    peerVeth: `csy${id}`,
    mac: "02:42:0a:01:00:02",
    ports: [],
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------------
// Golden files: each case's expected text is a file of its own under golden/firewall-render/,
// exactly as the renderer writes it. `UPDATE_GOLDEN=1 make unit` (or the same variable on a
// single `node --test` run) rewrites them from the current output; review the diff in git.

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const GOLDEN = fileURLToPath(new URL("golden/firewall-render/", import.meta.url));
const UPDATE = process.env.UPDATE_GOLDEN === "1";

/**
 * Fails unless `rendered` is byte for byte the golden file `name`, with a unified line diff
 * (- golden, + rendered) in the message; under UPDATE_GOLDEN=1 rewrites the file instead.
 */
function assertGolden(t: TestContext, name: string, rendered: string): void {
  const path = join(GOLDEN, name);
  const shown = relative(ROOT, path);
  let golden: string | undefined;
  try {
    golden = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  if (golden === rendered) return;
  if (UPDATE) {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(path, rendered);
    t.diagnostic(`${golden === undefined ? "created" : "rewrote"} ${shown}`);
    return;
  }
  const update = "UPDATE_GOLDEN=1 make unit";
  if (golden === undefined)
    assert.fail(`golden file ${shown} does not exist: create it with ${update}`);
  assert.fail(
    `rendered text differs from ${shown} (- golden, + rendered; if the change is meant, rewrite it with ${update}):\n${lineDiff(shown, golden, rendered)}`,
  );
}

/** A changed line as the diff prints it: quoted when whitespace or a control character hides. */
const visible = (line: string): string =>
  line === "" || /[^ -~]|\s$/.test(line) ? JSON.stringify(line) : line;

/** A unified diff of two texts by lines, three lines of context around each change. */
function lineDiff(name: string, golden: string, rendered: string): string {
  const a = golden.split("\n");
  const b = rendered.split("\n");
  // common[i * width + j]: the longest common subsequence of a[i..] and b[j..].
  const width = b.length + 1;
  const common = new Int32Array((a.length + 1) * width);
  const at = (i: number, j: number): number => common[i * width + j] ?? 0;
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      common[i * width + j] =
        a[i] === b[j] ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1));
    }
  }
  const ops: { mark: " " | "-" | "+"; line: string; aLine: number; bLine: number }[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const step = { aLine: i + 1, bLine: j + 1 };
    if (i < a.length && j < b.length && a[i] === b[j]) {
      ops.push({ mark: " ", line: a[i] ?? "", ...step });
      i++;
      j++;
    } else if (i < a.length && (j === b.length || at(i + 1, j) >= at(i, j + 1))) {
      ops.push({ mark: "-", line: visible(a[i] ?? ""), ...step });
      i++;
    } else {
      ops.push({ mark: "+", line: visible(b[j] ?? ""), ...step });
      j++;
    }
  }
  const context = 3;
  const out = [`--- ${name}`, "+++ rendered"];
  let index = 0;
  while (index < ops.length) {
    const change = ops.findIndex((op, k) => k >= index && op.mark !== " ");
    if (change === -1) break;
    const start = Math.max(index, change - context);
    let end = change;
    // A hunk runs on while the next change is within twice the context of the last one.
    for (let k = change; k < ops.length && k <= end + 2 * context; k++)
      if (ops[k]?.mark !== " ") end = k;
    const stop = Math.min(ops.length, end + context + 1);
    const hunk = ops.slice(start, stop);
    const first = hunk[0] ?? { aLine: 1, bLine: 1 };
    const aCount = hunk.filter((op) => op.mark !== "+").length;
    const bCount = hunk.filter((op) => op.mark !== "-").length;
    out.push(`@@ -${first.aLine},${aCount} +${first.bLine},${bCount} @@`);
    for (const op of hunk) out.push(`${op.mark}${op.line}`);
    index = stop;
  }
  return out.join("\n");
}

describe("renderNftables", () => {
  it("removes the table when there is no network (golden)", (t) => {
    assertGolden(t, "no-network.nft", renderNftables(emptyState()));
  });

  it("renders isolation, ICC, internal and masquerade rules (golden)", (t) => {
    const document = state(
      network("n1", "sy-one", "10.1.0.0/24"),
      network("n2", "sy-two", "10.2.0.0/24", { icc: false, masquerade: false }),
      network("n3", "sy-three", "10.3.0.0/24", { internal: true }),
    );
    document.endpoints.e1 = endpoint("e1", "n1", {
      address: "10.1.0.2/24",
      ports: [
        { proto: "tcp", containerPort: 80, hostIp: "", hostPort: 8081, hostPortEnd: 8081 },
        { proto: "sctp", containerPort: 90, hostIp: "", hostPort: 8082, hostPortEnd: 8082 },
        { proto: "udp", containerPort: 53, hostIp: "10.0.0.5", hostPort: 5353, hostPortEnd: 5353 },
        {
          proto: "sctp",
          containerPort: 91,
          hostIp: "127.0.0.1",
          hostPort: 8083,
          hostPortEnd: 8083,
        },
      ],
    });
    assertGolden(
      t,
      "isolation-icc-internal-masquerade.nft",
      renderNftables(document, { bridgeMeta: true, uplinks: ["br0"] }),
    );
  });

  it("drops ICC=false traffic by the network's addresses when the kernel cannot name the bridge (golden)", {
    timeout: 60_000,
  }, (t) => {
    const document = state(
      network("n1", "sy-one", "10.1.0.0/24", {
        icc: false,
        internal: true,
        ipv6: [{ pool: "fd00:1::/64", gateway: "fd00:1::1/64" }],
      }),
    );
    assertGolden(
      t,
      "icc-off-without-bridge-meta.nft",
      renderNftables(document, { bridgeMeta: false }),
    );
  });

  it("renders no bridge table when every network has ICC on and none is multi-host (golden)", {
    timeout: 60_000,
  }, (t) => {
    const rendered = renderNftables(state(network("n1", "sy-one", "10.1.0.0/24")));
    assert.doesNotMatch(rendered, /table bridge switchyard \{\n/);
    assertGolden(t, "icc-on-single-host.nft", rendered);
  });

  it("guards only the containers' addresses on a bridge the user made, and publishes port ranges (golden)", {
    timeout: 10_000,
  }, (t) => {
    const document = state(
      network("n1", "br-user", "10.5.0.0/24", {
        bridgeOwned: false,
        enableIpv6: true,
        ipv6: [{ pool: "fd00:5::/64", gateway: "fd00:5::1/64" }],
      }),
      network("n2", "sy-inner", "10.6.0.0/24", { internal: true }),
    );
    const range = (proto: "tcp" | "udp", hostIp: string, hostPort: number, end: number) => ({
      proto,
      containerPort: 80,
      hostIp,
      hostPort,
      hostPortEnd: end,
    });
    document.endpoints.e2 = endpoint("e2", "n1", {
      address: "10.5.0.3/24",
      // Loses to e1's binding of the same port (the first endpoint by ID wins).
      ports: [range("tcp", "0.0.0.0", 8000, 8000)],
    });
    document.endpoints.e1 = endpoint("e1", "n1", {
      address: "10.5.0.2/24",
      addressV6: "fd00:5::2/64",
      ports: [
        range("tcp", "", 8000, 8002),
        range("udp", "192.0.2.10", 9000, 9001),
        range("tcp", "::", 8100, 8100),
        range("tcp", "", 0, 0),
      ],
    });
    // An internal network publishes nothing.
    document.endpoints.e3 = endpoint("e3", "n2", {
      address: "10.6.0.2/24",
      ports: [range("tcp", "", 8200, 8200)],
    });
    assertGolden(
      t,
      "user-bridge-dual-stack.nft",
      renderNftables(document, { bridgeMeta: true, uplinks: ["eth0", "br0"] }),
    );
  });
});

describe("VXLAN from peer hosts only", () => {
  it("takes UDP 4789 only from the recorded peers, parsed, and renders nothing for single-host networks (golden)", {
    timeout: 10_000,
  }, (t) => {
    assert.doesNotMatch(renderNftables(state(network("n1", "sy-one", "10.1.0.0/24"))), /4789/);
    const document = state(network("n1", "sy-one", "10.60.0.0/24", { vxlanId: 4242 }));
    document.cluster = {
      hostId: "h1",
      networks: {
        "4242": {
          vni: 4242,
          networkId: "n1",
          subnet: "10.60.0.0/24",
          gateway: "10.60.0.1/24",
          blocks: [],
          // One peer from etcd is not an address: it must never reach the script.
          peers: ["192.0.2.7", "192.0.2.3", "1.2.3.4 } accept; flush ruleset"],
        },
      },
    };
    const rendered = renderNftables(document);
    assert.match(
      rendered,
      /set vxlan_peers \{\n {4}type ipv4_addr;\n {4}elements = \{ 192\.0\.2\.3, 192\.0\.2\.7 \}\n {2}\}/,
    );
    assert.match(
      rendered,
      /type filter hook input priority -1; policy accept;\n {4}udp dport 4789 @th,96,24 \{ 4242 \} ip saddr != @vxlan_peers drop/,
    );
    assert.doesNotMatch(rendered, /flush ruleset/);
    assertGolden(t, "vxlan-peers.nft", rendered);
  });

  // Regression: every UDP 4789 packet from a non-peer was dropped, which also dropped Docker
  // swarm's overlay and Calico's VXLAN on the same host.
  it("drops only the VNIs of Switchyard's networks, each once, in order (golden)", {
    timeout: 10_000,
  }, (t) => {
    const document = state(
      network("n1", "sy-b", "10.61.0.0/24", { vxlanId: 4343 }),
      network("n2", "sy-a", "10.60.0.0/24", { vxlanId: 4242 }),
      network("n3", "sy-c", "10.62.0.0/24"),
      network("n4", "sy-d", "10.63.0.0/24", { vxlanId: 16_777_215 }),
      network("n5", "sy-e", "10.64.0.0/24", { vxlanId: 4242 }),
    );
    assertGolden(t, "vxlan-vnis.nft", renderNftables(document));
  });
});

describe("the resolver's address only for this host", () => {
  // Regression: nothing kept the LAN from the resolver's address: any neighbour could route to
  // it through this host and make the plugin's event loop answer.
  it("takes port 53 only from lo, the multi-host bridges' subnets and other container networks (golden)", {
    timeout: 10_000,
  }, (t) => {
    const document = state(
      network("n1", "sy-mesh", "10.60.0.0/24", { vxlanId: 4242 }),
      network("n2", "sy-one", "10.1.0.0/24"),
      network("n3", "sy-wide", "10.61.0.0/16", {
        vxlanId: 4343,
        ipv4: [{ pool: "10.61.0.0/16" }, { pool: "10.62.0.0/16", gateway: "10.62.0.1/16" }],
      }),
    );
    assertGolden(
      t,
      "resolver-multi-host.nft",
      renderNftables(document, {
        bridgeMeta: true,
        uplinks: ["eth0"],
        resolverAddress: "169.254.53.53",
      }),
    );
    // The structure (what decides between a rebuild and an element update) carries it too.
    assertGolden(
      t,
      "resolver-multi-host-structure.nft",
      renderNftStructure(document, { bridgeMeta: true, resolverAddress: "169.254.53.53" }),
    );
  });

  it("guards the address with no multi-host network yet, and renders nothing without one (golden)", {
    timeout: 10_000,
  }, (t) => {
    const document = state(network("n2", "sy-one", "10.1.0.0/24"));
    const guarded = renderNftables(document, {
      bridgeMeta: true,
      resolverAddress: "169.254.53.53",
    });
    assert.match(guarded, /iifname "lo" return comment "the host itself"\n {4}iifname != @uplinks/);
    assert.doesNotMatch(renderNftables(document), /resolver|dport 53/);
    assertGolden(t, "resolver-single-host.nft", guarded);
  });

  it("guards the address before the first network, and only it (golden)", {
    timeout: 10_000,
  }, (t) => {
    assertGolden(
      t,
      "resolver-before-first-network.nft",
      renderNftables(emptyState(), {
        bridgeMeta: true,
        uplinks: ["eth0"],
        resolverAddress: "169.254.53.53",
      }),
    );
  });

  it("refuses to render an address that is not IPv4", { timeout: 10_000 }, () => {
    const document = state(network("n2", "sy-one", "10.1.0.0/24"));
    for (const resolverAddress of ["fd00::53", "169.254.53.53; flush ruleset", ""]) {
      assert.throws(
        () => renderNftables(document, { bridgeMeta: true, resolverAddress }),
        /is not an IPv4 address/,
        resolverAddress,
      );
    }
  });
});

describe("published ports as elements", () => {
  const withPorts = (ports: StateDocument["endpoints"][string]["ports"]): StateDocument => {
    const document = state(network("n1", "sy-one", "10.1.0.0/24"));
    document.endpoints.e1 = endpoint("e1", "n1", { address: "10.1.0.2/24", ports });
    return document;
  };
  const tcp = (hostPort: number, containerPort: number) => ({
    proto: "tcp" as const,
    containerPort,
    hostIp: "",
    hostPort,
    hostPortEnd: hostPort,
  });

  it("a port change leaves the rest of the ruleset as it was (golden)", (t) => {
    assert.equal(
      renderNftStructure(withPorts([tcp(8081, 80)])),
      renderNftStructure(withPorts([tcp(9000, 90), tcp(9001, 91)])),
    );
    assert.notEqual(
      renderNftStructure(withPorts([])),
      renderNftStructure(
        state(network("n1", "sy-one", "10.1.0.0/24"), network("n2", "b2", "10.2.0.0/24")),
      ),
    );
    // The structure is the ruleset of the same networks with nothing published.
    assertGolden(t, "icc-on-single-host.nft", renderNftStructure(withPorts([tcp(8081, 80)])));
  });

  it("renders one transaction: removals first, then additions (golden)", (t) => {
    const update = renderPublishedUpdate(
      publishedElements(withPorts([tcp(8081, 80), tcp(8082, 82)])),
      publishedElements(withPorts([tcp(8081, 8080), tcp(8083, 83)])),
    );
    assertGolden(t, "published-update.nft", update);
    const same = publishedElements(withPorts([tcp(8081, 80)]));
    assert.equal(renderPublishedUpdate(same, same), "");
  });
});

describe("renderIptables", () => {
  it("accepts traffic into Switchyard's bridges and, out of them, only what nftables marked (golden)", (t) => {
    assertGolden(
      t,
      "iptables.rules",
      renderIptables(
        state(network("n1", "sy-one", "10.1.0.0/24"), network("n2", "br1", "10.2.0.0/24")),
      ),
    );
  });
});

describe("golden files", () => {
  it("are each read by a case in this file (a file no case reads pins nothing)", () => {
    const source = readFileSync(fileURLToPath(import.meta.url), "utf8");
    const unread = readdirSync(GOLDEN).filter((file) => !source.includes(`"${file}"`));
    assert.deepEqual(unread, [], `no case reads these files in ${relative(ROOT, GOLDEN)}`);
  });

  it("differ as a unified line diff; a missing final newline shows as a removed empty line", () => {
    const diff = lineDiff("x.nft", "a\nb\nc\nd\ne\nf\ng\nh\n", "a\nb\nc\nD\ne\nf\ng\nh");
    assert.equal(
      diff,
      `--- x.nft
+++ rendered
@@ -1,9 +1,8 @@
 a
 b
 c
-d
+D
 e
 f
 g
 h
-""`,
    );
    // Changes further apart than twice the context are hunks of their own.
    const lines = Array.from({ length: 12 }, (_, k) => `line ${k + 1}`);
    const changed = lines.map((line, k) => (k === 0 || k === 11 ? `${line}!` : line));
    assert.equal(
      lineDiff("y.nft", lines.join("\n"), changed.join("\n")),
      `--- y.nft
+++ rendered
@@ -1,4 +1,4 @@
-line 1
+line 1!
 line 2
 line 3
 line 4
@@ -9,4 +9,4 @@
 line 9
 line 10
 line 11
-line 12
+line 12!`,
    );
  });
});

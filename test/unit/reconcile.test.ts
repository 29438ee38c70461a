import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ConntrackFilter } from "../../src/datapath/datapath.ts";
import { buildTestApp } from "../support/fakes.ts";

const NET = "a".repeat(64);
const USER_NET = "c".repeat(64);
const EP = "b".repeat(64);

describe("reconcile at start-up", () => {
  it("re-creates lost bridges, reports vanished user bridges, removes strays", async () => {
    const t = await buildTestApp();
    t.datapath.addLink("br-user", "bridge");
    for (const [id, generic, pool] of [
      [NET, {}, "10.15.20.0/24"],
      [USER_NET, { bridge: "br-user" }, "10.15.21.0/24"],
    ] as const) {
      await t.call("/IpamDriver.RequestPool", { Pool: pool });
      const created = await t.call("/NetworkDriver.CreateNetwork", {
        NetworkID: id,
        Options: { "com.docker.network.generic": generic },
        IPv4Data: [{ Pool: pool, Gateway: pool.replace("0/24", "1/24") }],
      });
      assert.deepEqual(created.body, {});
    }
    await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { Address: "10.15.20.2/24" },
    });
    await t.call("/NetworkDriver.Join", { NetworkID: NET, EndpointID: EP });
    t.datapath.moveIntoContainer("csybbbbbbbbbbb");

    // What a reboot and some debris look like.
    t.datapath.hostLinks.delete("sy-aaaaaaaaaaaa");
    const veth = t.datapath.hostLinks.get("vsybbbbbbbbbbb");
    if (veth !== undefined) veth.master = undefined; // the kernel frees a deleted bridge's ports
    t.datapath.hostLinks.delete("br-user");
    t.datapath.addLink("vsy0123456789a", "veth");
    t.datapath.addLink("sy-0123456789ab", "bridge");
    t.datapath.addLink("sy-custom", "bridge");

    const repairs = await t.network.reconcile();
    assert.deepEqual(repairs.sort(), [
      `bridge "br-user" of network cccccccccccc no longer exists on this host; re-create it (Switchyard does not make bridges it was told to use)`,
      "re-attached vsybbbbbbbbbbb to sy-aaaaaaaaaaaa",
      "re-created bridge sy-aaaaaaaaaaaa",
      "removed stray bridge sy-0123456789ab",
      "removed stray veth vsy0123456789a",
    ]);
    assert.deepEqual(t.datapath.hostLinks.get("sy-aaaaaaaaaaaa")?.addresses, ["10.15.20.1/24"]);
    assert.equal(t.datapath.hostLinks.has("br-user"), false, "a user bridge is never re-created");
    assert.equal(
      t.datapath.hostLinks.has("vsybbbbbbbbbbb"),
      true,
      "known endpoints keep their veth",
    );
    assert.equal(
      t.datapath.hostLinks.has("sy-custom"),
      true,
      "names Switchyard did not derive are left alone",
    );
    assert.deepEqual(await t.network.reconcile(), [
      `bridge "br-user" of network cccccccccccc no longer exists on this host; re-create it (Switchyard does not make bridges it was told to use)`,
    ]);
  });
});

describe("reconcile leaves alone what is in use but unknown", () => {
  it("keeps a Switchyard-named bridge with containers on it and the veths on it", async () => {
    // Regression: after `docker plugin upgrade` Docker 20.10 mounted the default state
    // directory instead of the configured one; the plugin, seeing an empty state, deleted the
    // live network's bridge and veths as strays.
    const t = await buildTestApp();
    t.datapath.addLink("sy-aaaaaaaaaaaa", "bridge");
    t.datapath.addLink("vsy11111111111", "veth");
    const veth = t.datapath.hostLinks.get("vsy11111111111");
    if (veth !== undefined) veth.master = "sy-aaaaaaaaaaaa";
    assert.deepEqual(await t.network.reconcile(), []);
    assert.equal(t.datapath.hostLinks.has("sy-aaaaaaaaaaaa"), true);
    assert.equal(t.datapath.hostLinks.has("vsy11111111111"), true);
  });
});

describe("reconcile goes on after a failure", () => {
  it("repairs the other networks, rebuilds the filter and retries the failed repair", {
    timeout: 10_000,
  }, async () => {
    const t = await buildTestApp();
    for (const [id, pool] of [
      ["1".repeat(64), "10.16.1.0/24"],
      ["2".repeat(64), "10.16.2.0/24"],
    ] as const) {
      await t.call("/IpamDriver.RequestPool", { Pool: pool });
      await t.call("/NetworkDriver.CreateNetwork", {
        NetworkID: id,
        IPv4Data: [{ Pool: pool, Gateway: pool.replace("0/24", "1/24") }],
      });
    }
    // A reboot took both bridges; re-creating the first one fails once.
    t.datapath.hostLinks.delete("sy-111111111111");
    t.datapath.hostLinks.delete("sy-222222222222");
    const original = t.datapath.ensureBridge.bind(t.datapath);
    let failures = 0;
    t.datapath.ensureBridge = async (spec) => {
      if (spec.name === "sy-111111111111" && failures++ === 0)
        throw new Error("RTNETLINK answers: busy");
      return original(spec);
    };
    const appliedBefore = t.firewall.applied;
    const repairs = await t.network.reconcile();
    assert.deepEqual(repairs, ["re-created bridge sy-222222222222"]);
    assert.equal(t.firewall.applied, appliedBefore + 1, "the packet filter was rebuilt anyway");
    assert.equal(t.datapath.hostLinks.has("sy-222222222222"), true);
    // The failed one is tried again a second later, without another start-up.
    const deadline = Date.now() + 5_000;
    while (!t.datapath.hostLinks.has("sy-111111111111") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(t.datapath.hostLinks.has("sy-111111111111"), true, "retried and repaired");
    t.network.stop();
  });
});

describe("endpoints whose container went while the plugin was away", () => {
  it("are forgotten at start-up, and their published ports can be taken again", {
    timeout: 10_000,
  }, async () => {
    const t = await buildTestApp();
    await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
    await t.call("/NetworkDriver.CreateNetwork", {
      NetworkID: NET,
      IPv4Data: [{ Pool: "10.15.20.0/24", Gateway: "10.15.20.1/24" }],
    });
    const portmap = {
      "com.docker.network.portmap": [
        { Proto: 6, Port: 80, HostIP: "", HostPort: 8080, HostPortEnd: 8080 },
      ],
    };
    for (const [id, address] of [
      [EP, "10.15.20.2/24"],
      ["d".repeat(64), "10.15.20.3/24"],
    ] as const) {
      await t.call("/NetworkDriver.CreateEndpoint", {
        NetworkID: NET,
        EndpointID: id,
        Interface: { Address: address },
      });
      t.datapath.moveIntoContainer(`csy${id.slice(0, 11)}`);
    }
    const first = await t.call("/NetworkDriver.ProgramExternalConnectivity", {
      NetworkID: NET,
      EndpointID: EP,
      Options: portmap,
    });
    assert.equal(first.status, 200);
    // `docker rm -f` while the plugin was disabled: the kernel deleted the veth with the
    // container's namespace, and DeleteEndpoint never reached Switchyard.
    await t.datapath.deleteLink("vsybbbbbbbbbbb");
    const repairs = await t.network.reconcile();
    assert.deepEqual(repairs, [
      "forgot endpoint bbbbbbbbbbbb: its veth vsybbbbbbbbbbb is gone (container removed while the plugin was away)",
    ]);
    assert.equal(t.state.document.endpoints[EP], undefined);
    assert.equal(t.publisher.opened.has(EP), false, "its published port was closed");
    const second = await t.call("/NetworkDriver.ProgramExternalConnectivity", {
      NetworkID: NET,
      EndpointID: "d".repeat(64),
      Options: portmap,
    });
    assert.equal(second.status, 200, JSON.stringify(second.body));
  });

  it("also when Docker gave the container end back, and then its address goes back too", {
    timeout: 10_000,
  }, async () => {
    const t = await buildTestApp();
    const pool = await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
    const poolId = String(pool.body.PoolID);
    await t.call("/NetworkDriver.CreateNetwork", {
      NetworkID: NET,
      IPv4Data: [{ Pool: "10.15.20.0/24", Gateway: "10.15.20.1/24" }],
    });
    const { body } = await t.call("/IpamDriver.RequestAddress", { PoolID: poolId });
    await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: EP,
      Interface: { Address: String(body.Address) },
    });
    // Docker dropped the sandbox while the plugin was disabled: libnetwork moves the container
    // end back to the host, and its DeleteEndpoint and ReleaseAddress both failed.
    assert.equal(t.datapath.hostLinks.has("csybbbbbbbbbbb"), true);
    const repairs = await t.network.reconcile();
    assert.deepEqual(repairs, [
      "forgot endpoint bbbbbbbbbbbb: Docker gave its container end vsybbbbbbbbbbb back (container removed while the plugin was away)",
    ]);
    assert.equal(
      t.state.ipam.isAllocated(poolId, String(body.Address)),
      false,
      "the address is free again",
    );
    assert.equal(t.datapath.hostLinks.has("vsybbbbbbbbbbb"), false, "the pair is deleted");
  });
});

describe("an empty or wrong state directory", () => {
  it("leaves the packet filter alone while unknown bridges carry containers", {
    timeout: 10_000,
  }, async () => {
    const t = await buildTestApp();
    t.datapath.addLink("sy-aaaaaaaaaaaa", "bridge");
    t.datapath.addLink("vsy11111111111", "veth");
    const veth = t.datapath.hostLinks.get("vsy11111111111");
    if (veth !== undefined) veth.master = "sy-aaaaaaaaaaaa";
    await t.network.reconcile();
    assert.equal(t.firewall.applied, 0, "an empty ruleset would cut those containers off");
    // Once nothing unknown is in use, start-up rebuilds the filter as usual.
    t.datapath.hostLinks.delete("vsy11111111111");
    await t.network.reconcile();
    assert.equal(t.firewall.applied, 1);
  });
});

describe("published ports after a plugin restart", () => {
  const portmap = (...ports: [proto: number, hostPort: number][]) => ({
    "com.docker.network.portmap": ports.map(([Proto, HostPort]) => ({
      Proto,
      Port: 53,
      HostIP: "",
      HostPort,
      HostPortEnd: HostPort,
    })),
  });

  /** A network with two containers publishing ports, then a plugin restart (no relay open). */
  async function restarted() {
    const t = await buildTestApp();
    await t.call("/IpamDriver.RequestPool", { Pool: "10.15.20.0/24" });
    await t.call("/NetworkDriver.CreateNetwork", {
      NetworkID: NET,
      IPv4Data: [{ Pool: "10.15.20.0/24", Gateway: "10.15.20.1/24" }],
    });
    const kept = "d".repeat(64);
    for (const [id, address, ports] of [
      [EP, "10.15.20.2/24", portmap([6, 8080], [17, 8081])],
      [kept, "10.15.20.3/24", portmap([17, 5353])],
    ] as const) {
      await t.call("/NetworkDriver.CreateEndpoint", {
        NetworkID: NET,
        EndpointID: id,
        Interface: { Address: address },
      });
      t.datapath.moveIntoContainer(`csy${id.slice(0, 11)}`);
      const published = await t.call("/NetworkDriver.ProgramExternalConnectivity", {
        NetworkID: NET,
        EndpointID: id,
        Options: ports,
      });
      assert.equal(published.status, 200, JSON.stringify(published.body));
    }
    t.publisher.opened.clear();
    return { t, kept };
  }

  /** Runs start-up as main.ts does: reconciliation and the restore of published ports, unawaited. */
  async function startUp(t: Awaited<ReturnType<typeof buildTestApp>>): Promise<void> {
    const reconciled = t.network.reconcile();
    const restored = t.network.restorePublishedPorts();
    await Promise.all([reconciled, restored]);
    t.network.stop();
  }

  // Regression: the restore ran beside start-up reconciliation, without any lock. A relay it
  // opened after reconciliation forgot the endpoint (its container removed while the plugin
  // was away) was never closed: it held the host port, which the state said was free, so the
  // next container asking for it was refused ("another program on the host already uses it").
  it("never re-opens a port of an endpoint that reconciliation forgets", {
    timeout: 10_000,
  }, async () => {
    const { t, kept } = await restarted();
    await t.datapath.deleteLink("vsybbbbbbbbbbb");
    // A real relay takes a moment to bind; reconciliation meanwhile does its repairs.
    const open = t.publisher.open.bind(t.publisher);
    t.publisher.open = async (owner, binding) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return open(owner, binding);
    };
    await startUp(t);
    assert.equal(t.state.document.endpoints[EP], undefined, "the endpoint was forgotten");
    assert.equal(t.publisher.opened.get(EP), undefined, "and none of its ports is held");
    assert.equal(t.publisher.opened.get(kept)?.length, 1, "the other container's port is back");
  });

  it("re-opens ports after the repairs and the packet filter, then deletes UDP conntrack entries", {
    timeout: 10_000,
  }, async () => {
    const { t, kept } = await restarted();
    const steps: string[] = [];
    // A reboot: the bridge is gone, and the kernel freed its ports.
    t.datapath.hostLinks.delete("sy-aaaaaaaaaaaa");
    for (const veth of ["vsybbbbbbbbbbb", "vsyddddddddddd"]) {
      const link = t.datapath.hostLinks.get(veth);
      if (link !== undefined) link.master = undefined;
    }
    const ensureBridge = t.datapath.ensureBridge.bind(t.datapath);
    t.datapath.ensureBridge = async (spec) => {
      steps.push(`bridge ${spec.name}`);
      return ensureBridge(spec);
    };
    const attach = t.datapath.attach.bind(t.datapath);
    t.datapath.attach = async (veth, bridge) => {
      steps.push(`attach ${veth}`);
      return attach(veth, bridge);
    };
    const apply = t.firewall.apply.bind(t.firewall);
    t.firewall.apply = async () => {
      steps.push("packet filter");
      return apply();
    };
    const open = t.publisher.open.bind(t.publisher);
    t.publisher.open = async (owner, binding) => {
      steps.push(`relay ${binding.hostPort}/${binding.proto}`);
      return open(owner, binding);
    };
    Object.assign(t.datapath, {
      deleteConntrackEntries: async (filter: ConntrackFilter) => {
        steps.push(`conntrack ${filter.port}/${filter.proto}`);
        return 0;
      },
    });
    await startUp(t);
    assert.deepEqual(steps, [
      "bridge sy-aaaaaaaaaaaa",
      "attach vsybbbbbbbbbbb",
      "attach vsyddddddddddd",
      "packet filter",
      "relay 8080/tcp",
      "relay 8081/udp",
      "relay 5353/udp",
      "conntrack 8081/udp",
      "conntrack 5353/udp",
    ]);
    assert.equal(t.publisher.opened.get(EP)?.length, 2);
    assert.equal(t.publisher.opened.get(kept)?.length, 1);
  });
});

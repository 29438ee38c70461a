import assert from "node:assert/strict";
import { describe, it } from "node:test";
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

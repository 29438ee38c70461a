import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { createNamespace, inNamespace, requireRoot } from "../support/netns.ts";

describe("IpDatapath in a throwaway namespace", () => {
  let ns: ReturnType<typeof createNamespace>;
  let datapath: IpDatapath;

  before(() => {
    requireRoot();
    ns = createNamespace();
    datapath = new IpDatapath(ns.runner);
  });
  after(() => ns?.destroy());

  it("creates a bridge with its addresses, up, and is idempotent", async () => {
    const spec = { name: "sy-test", addresses: ["10.50.0.1/24", "fd00:50::1/64"], mtu: 1400 };
    await datapath.ensureBridge(spec);
    await datapath.ensureBridge(spec);
    const link = await datapath.link("sy-test");
    assert.equal(link?.kind, "bridge");
    assert.equal(link?.up, true);
    assert.equal(link?.mtu, 1400);
    const addresses = inNamespace(ns.name, ["ip", "-br", "addr", "show", "dev", "sy-test"]);
    assert.match(addresses, /10\.50\.0\.1\/24/);
    assert.match(addresses, /fd00:50::1\/64/);
    assert.equal(addresses.match(/10\.50\.0\.1/g)?.length, 1, "address added once");
  });

  it("re-adds an address a person removed", async () => {
    inNamespace(ns.name, ["ip", "addr", "del", "10.50.0.1/24", "dev", "sy-test"]);
    await datapath.ensureBridge({ name: "sy-test", addresses: ["10.50.0.1/24"] });
    assert.match(
      inNamespace(ns.name, ["ip", "-br", "addr", "show", "dev", "sy-test"]),
      /10\.50\.0\.1\/24/,
    );
  });

  it("refuses to treat a non-bridge as a bridge", async () => {
    inNamespace(ns.name, ["ip", "link", "add", "notbr0", "type", "veth", "peer", "name", "notbr1"]);
    await assert.rejects(datapath.ensureBridge({ name: "notbr0", addresses: [] }), /kind veth/);
    assert.equal((await datapath.link("notbr0"))?.kind, "veth");
  });

  it("makes a veth with the peer's MAC and MTU, and attaches it", async () => {
    await datapath.ensureVeth({
      hostName: "vsytest",
      peerName: "csytest",
      peerMac: "02:42:0a:32:00:05",
      mtu: 1400,
    });
    const peer = await datapath.link("csytest");
    assert.equal(peer?.mac, "02:42:0a:32:00:05");
    assert.equal(peer?.mtu, 1400);
    assert.equal((await datapath.link("vsytest"))?.mtu, 1400);
    await datapath.attach("vsytest", "sy-test");
    const host = await datapath.link("vsytest");
    assert.equal(host?.master, "sy-test");
    assert.equal(host?.up, true);
  });

  it("makes, attaches and brings up a veth in one go when given the bridge", async () => {
    await datapath.ensureVeth({
      hostName: "vsyone",
      peerName: "csyone",
      peerMac: "02:42:0a:32:00:09",
      bridge: "sy-test",
    });
    const host = await datapath.link("vsyone");
    assert.equal(host?.master, "sy-test");
    assert.equal(host?.up, true);
    await datapath.deleteLink("vsyone");
  });

  it("re-creating a veth replaces the old pair", async () => {
    await datapath.ensureVeth({
      hostName: "vsytest",
      peerName: "csytest",
      peerMac: "02:42:0a:32:00:06",
    });
    assert.equal((await datapath.link("csytest"))?.mac, "02:42:0a:32:00:06");
  });

  it("deletes are idempotent and take the peer along", async () => {
    await datapath.deleteLink("vsytest");
    await datapath.deleteLink("vsytest");
    assert.equal(await datapath.link("csytest"), undefined);
    await datapath.deleteBridge("sy-test");
    await datapath.deleteBridge("sy-test");
    assert.equal(await datapath.link("sy-test"), undefined);
  });

  it("reports a missing interface as undefined", async () => {
    assert.equal(await datapath.link("nope0"), undefined);
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { defaultIpamSettings, Ipam } from "../../src/ipam/ipam.ts";
import { formatPrefix } from "../../src/ipam/prefix.ts";
import { createNamespace, inNamespace, requireRoot } from "../support/netns.ts";

// Guards against automatic subnets that overlap what the host already routes or addresses:
// the IPAM core can only skip what hostPrefixes() reports.
describe("IpDatapath.hostPrefixes in a throwaway namespace", () => {
  let ns: ReturnType<typeof createNamespace>;
  let datapath: IpDatapath;

  before(() => {
    requireRoot();
    ns = createNamespace();
    datapath = new IpDatapath(ns.runner);
    // A bridge stands in for a dummy interface: the dummy driver is missing from some test
    // kernels, and the kind of device does not matter to routes and addresses.
    const setup = [
      ["ip", "link", "add", "sy-hp0", "type", "bridge"],
      ["ip", "link", "set", "sy-hp0", "up"],
      ["ip", "addr", "add", "172.17.0.1/16", "dev", "sy-hp0"],
      ["ip", "route", "add", "172.18.0.0/16", "dev", "sy-hp0"],
      ["ip", "route", "add", "default", "via", "172.17.0.254"],
      ["ip", "addr", "add", "fd00:5::1/64", "dev", "sy-hp0", "nodad"],
      ["ip", "-6", "route", "add", "fd00:6::/48", "dev", "sy-hp0"],
      ["ip", "-6", "route", "add", "default", "via", "fd00:5::fe"],
      ["ip", "route", "add", "unreachable", "10.77.0.0/16"],
    ];
    for (const argv of setup) inNamespace(ns.name, argv);
  });
  after(() => ns?.destroy());

  it("reports addressed and routed prefixes of both families, not the default routes", {
    timeout: 60_000,
  }, async () => {
    const got = (await datapath.hostPrefixes()).map(formatPrefix);
    for (const expected of [
      "172.17.0.0/16",
      "172.18.0.0/16",
      "10.77.0.0/16",
      "fd00:5::/64",
      "fd00:6::/48",
      "127.0.0.0/8",
    ]) {
      assert.ok(got.includes(expected), `${expected} in ${got.join(" ")}`);
    }
    for (const unwanted of ["0.0.0.0/0", "::/0", "fe80::/64", "ff00::/8", "172.17.255.255/32"]) {
      assert.ok(!got.includes(unwanted), `${unwanted} not in ${got.join(" ")}`);
    }
    assert.equal(new Set(got).size, got.length, "no duplicates");
  });

  it("the IPAM core given them picks the first default subnet free on this host", {
    timeout: 60_000,
  }, async () => {
    const ipam = new Ipam(defaultIpamSettings());
    const avoid = await datapath.hostPrefixes();
    assert.equal(
      ipam.requestPool({ addressSpace: "LocalDefault", v6: false, avoid }).pool,
      "172.19.0.0/16",
    );
  });

  it("a prefix the host stops using is no longer reported", { timeout: 60_000 }, async () => {
    inNamespace(ns.name, ["ip", "route", "del", "172.18.0.0/16", "dev", "sy-hp0"]);
    const got = (await datapath.hostPrefixes()).map(formatPrefix);
    assert.ok(!got.includes("172.18.0.0/16"), got.join(" "));
    assert.ok(got.includes("172.17.0.0/16"), got.join(" "));
  });
});

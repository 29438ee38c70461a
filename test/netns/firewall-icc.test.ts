import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { FakeHost } from "../support/fake-host.ts";
import { inNamespace, pings } from "../support/netns.ts";

/**
 * Regression: ICC=false was only a rule in the inet forward hook, which bridged traffic between
 * two ports of one bridge reaches only through br_netfilter (bridge-nf-call-iptables=1). On a
 * host without it, containers of an ICC=false network talked freely.
 */
describe("ICC off without br_netfilter", { timeout: 60_000 }, () => {
  let host: FakeHost;
  const c: Record<string, string> = {};

  before(async () => {
    host = new FakeHost({ bridgeNetfilter: false });
    host.bridge("sy-closed", "10.221.1.1/24");
    host.bridge("sy-open", "10.221.2.1/24");
    host.addNetwork("closed", "sy-closed", "10.221.1.0/24", { icc: false });
    host.addNetwork("open", "sy-open", "10.221.2.0/24");
    for (const [key, bridge, network, address] of [
      ["c1", "sy-closed", "closed", "10.221.1.2"],
      ["c2", "sy-closed", "closed", "10.221.1.3"],
      ["o1", "sy-open", "open", "10.221.2.2"],
      ["o2", "sy-open", "open", "10.221.2.3"],
    ] as const) {
      const gateway = address.replace(/\.\d+$/, ".1");
      c[key] = host.container(bridge, `vsy-${key}`, `${address}/24`, gateway);
      host.addEndpoint(key, network, `vsy-${key}`, `${address}/24`);
    }
    await host.apply();
  });

  after(() => host?.destroy());

  it("containers of an ICC=false network cannot reach each other", { timeout: 60_000 }, () => {
    assert.equal(pings(c.c1 ?? "", "10.221.1.3"), false, "c1 → c2 must be dropped");
    assert.equal(pings(c.c2 ?? "", "10.221.1.2"), false, "c2 → c1 must be dropped");
  });

  it("but each still reaches the gateway", { timeout: 60_000 }, () => {
    assert.equal(pings(c.c1 ?? "", "10.221.1.1"), true);
    assert.equal(pings(c.c2 ?? "", "10.221.1.1"), true);
  });

  it("the drop sits in the bridge family, which sees bridged frames", { timeout: 60_000 }, () => {
    const table = inNamespace(host.name, ["nft", "list", "table", "bridge", "switchyard"]);
    assert.match(table, /hook forward/);
    assert.match(table, /drop comment "icc off"/);
    assert.doesNotMatch(table, /10\.221\.2\.0|sy-open/, "nothing for the ICC=true network");
  });

  it("containers of an ICC=true network reach each other", { timeout: 60_000 }, () => {
    assert.equal(pings(c.o1 ?? "", "10.221.2.3"), true);
  });
});

// Docker 29 can run with its nftables firewall backend: no DOCKER-USER, no iptables chains at
// all, and the FORWARD policy is whatever the host had. Switchyard's networks must work the
// same there: out through the uplink, isolated from each other, unreachable from outside.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { FakeHost } from "../support/fake-host.ts";
import { pings } from "../support/netns.ts";

for (const forwardPolicy of ["DROP", "ACCEPT"] as const) {
  describe(`a host without Docker's iptables chains, FORWARD policy ${forwardPolicy}`, {
    timeout: 60_000,
  }, () => {
    let host: FakeHost;
    let outside = "";
    let a = "";
    let b = "";

    before(async () => {
      host = new FakeHost({
        bridgeNetfilter: true,
        iptables: { dockerChains: false, forwardPolicy },
      });
      outside = host.uplink();
      // A route back, so only the packet filter keeps the outside out.
      execFileSync("ip", ["-n", outside, "route", "add", "10.225.0.0/16", "via", "10.250.0.1"]);
      host.bridge("sy-ba", "10.225.1.1/24");
      host.addNetwork("a", "sy-ba", "10.225.1.0/24");
      a = host.container("sy-ba", "vsy-ba1", "10.225.1.2/24", "10.225.1.1");
      host.addEndpoint("a1", "a", "vsy-ba1", "10.225.1.2/24");
      host.bridge("sy-bb", "10.225.2.1/24");
      host.addNetwork("b", "sy-bb", "10.225.2.0/24");
      b = host.container("sy-bb", "vsy-bb1", "10.225.2.2/24", "10.225.2.1");
      host.addEndpoint("b1", "b", "vsy-bb1", "10.225.2.2/24");
      await host.apply();
    });

    after(() => host?.destroy());

    it("containers reach the outside through the uplink", { timeout: 60_000 }, () => {
      assert.equal(pings(a, "10.250.0.2"), true);
      assert.equal(pings(b, "10.250.0.2"), true);
    });

    it("networks stay isolated and the outside cannot reach in", { timeout: 60_000 }, () => {
      assert.equal(pings(a, "10.225.2.2"), false, "network a → network b");
      assert.equal(pings(b, "10.225.1.2"), false, "network b → network a");
      assert.equal(pings(outside, "10.225.1.2"), false, "outside → container");
    });
  });
}

// Docker 28's protections, adopted on every Docker release: a container's address is reachable
// only through its own bridge. Nothing routed in from another interface gets to it, not even a
// port it publishes, and with masquerading off the outside's replies to its own address are
// dropped too (Docker 28 gives no connection there).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { FakeHost } from "../support/fake-host.ts";
import { pings } from "../support/netns.ts";

describe("direct access to container addresses", { timeout: 60_000 }, () => {
  let host: FakeHost;
  let outside = "";
  let plain = "";
  let unmasqueraded = "";

  before(async () => {
    host = new FakeHost({ bridgeNetfilter: true });
    outside = host.uplink();
    // The outside routes container subnets to this host, as a LAN router might.
    execFileSync("ip", ["-n", outside, "route", "add", "10.226.0.0/16", "via", "10.250.0.1"]);
    host.bridge("sy-da", "10.226.1.1/24");
    host.addNetwork("plain", "sy-da", "10.226.1.0/24");
    plain = host.container("sy-da", "vsy-da1", "10.226.1.2/24", "10.226.1.1");
    host.addEndpoint("p1", "plain", "vsy-da1", "10.226.1.2/24", [
      { proto: "tcp", containerPort: 80, hostIp: "", hostPort: 8085, hostPortEnd: 8085 },
    ]);
    host.bridge("sy-db", "10.226.2.1/24");
    host.addNetwork("nomasq", "sy-db", "10.226.2.0/24", { masquerade: false });
    unmasqueraded = host.container("sy-db", "vsy-db1", "10.226.2.2/24", "10.226.2.1");
    host.addEndpoint("n1", "nomasq", "vsy-db1", "10.226.2.2/24");
    await host.apply();
  });

  after(() => host?.destroy());

  it("the outside cannot reach a container's own address, routed", { timeout: 60_000 }, () => {
    assert.equal(pings(outside, "10.226.1.2"), false);
  });

  it("a masqueraded container reaches the outside", { timeout: 60_000 }, () => {
    assert.equal(pings(plain, "10.250.0.2"), true);
  });

  it("with masquerading off, the outside's replies to the container's address are dropped", {
    timeout: 60_000,
  }, () => {
    assert.equal(pings(unmasqueraded, "10.250.0.2"), false);
  });
});

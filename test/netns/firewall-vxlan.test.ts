// Regression: Switchyard's input rule dropped every UDP 4789 packet that did not come from a
// peer host, so Docker swarm's overlay, Calico or Flannel VXLAN on the same host lost theirs.
// Only the VNIs of Switchyard's own networks may now be dropped.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { FakeHost } from "../support/fake-host.ts";
import { inNamespace } from "../support/netns.ts";

const SWITCHYARD_VNI = 4242;
const FOREIGN_VNI = 999;
/** A second address of the outside namespace, registered as a peer host. */
const PEER = "10.250.0.9";

/** Counters after Switchyard's chain (priority -1): what they count got past it. */
const COUNTING = `table inet sytest_vxlan {
  counter switchyard_vni {}
  counter foreign_vni {}
  chain input {
    type filter hook input priority 10; policy accept;
    udp dport 4789 @th,96,24 ${SWITCHYARD_VNI} counter name "switchyard_vni"
    udp dport 4789 @th,96,24 ${FOREIGN_VNI} counter name "foreign_vni"
  }
}
`;

/**
 * Sends `count` VXLAN packets (flags, VNI, an inner Ethernet header of zeros) from a namespace,
 * from `source`, to the host's 10.250.0.1:4789.
 */
function sendVxlan(namespace: string, source: string, vni: number, count: number): void {
  const script = `
    const socket = require("node:dgram").createSocket("udp4");
    const packet = Buffer.alloc(8 + 14);
    packet[0] = 0x08;
    packet.writeUIntBE(${vni}, 4, 3);
    socket.bind(0, "${source}", () => {
      let left = ${count};
      const next = () => left-- > 0
        ? socket.send(packet, 4789, "10.250.0.1", next)
        : socket.close();
      next();
    });`;
  execFileSync("ip", ["netns", "exec", namespace, process.execPath, "-e", script]);
}

describe("VXLAN of other VNIs passes Switchyard's input rule", { timeout: 60_000 }, () => {
  let host: FakeHost;
  let outside = "";

  const counted = (name: string): number => {
    const listed = JSON.parse(
      inNamespace(host.name, ["nft", "-j", "list", "counter", "inet", "sytest_vxlan", name]),
    ) as { nftables: { counter?: { packets: number } }[] };
    return listed.nftables.find((item) => item.counter !== undefined)?.counter?.packets ?? -1;
  };

  before(async () => {
    host = new FakeHost({ bridgeNetfilter: true });
    outside = host.uplink();
    inNamespace(outside, ["ip", "addr", "add", `${PEER}/24`, "dev", "eth0"]);
    host.bridge("sy-vx", "10.227.1.1/24");
    host.addNetwork("mesh", "sy-vx", "10.227.1.0/24", { vxlanId: SWITCHYARD_VNI });
    host.state.cluster = {
      hostId: "h1",
      networks: {
        [SWITCHYARD_VNI]: {
          vni: SWITCHYARD_VNI,
          networkId: "mesh",
          subnet: "10.227.1.0/24",
          gateway: "10.227.1.1/24",
          blocks: [],
          peers: [PEER],
        },
      },
    };
    await host.apply();
    execFileSync("ip", ["netns", "exec", host.name, "nft", "-f", "-"], { input: COUNTING });
  });

  after(() => host?.destroy());

  it("drops a non-peer's packets of a Switchyard VNI", { timeout: 60_000 }, () => {
    sendVxlan(outside, "10.250.0.2", SWITCHYARD_VNI, 5);
    assert.equal(counted("switchyard_vni"), 0);
  });

  it("lets a non-peer's packets of another VNI through untouched", { timeout: 60_000 }, () => {
    sendVxlan(outside, "10.250.0.2", FOREIGN_VNI, 5);
    assert.equal(counted("foreign_vni"), 5);
  });

  it("lets a peer's packets of a Switchyard VNI through", { timeout: 60_000 }, () => {
    const before = counted("switchyard_vni");
    sendVxlan(outside, PEER, SWITCHYARD_VNI, 3);
    assert.equal(counted("switchyard_vni") - before, 3);
  });
});

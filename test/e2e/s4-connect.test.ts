// S4 — connect and disconnect (SCENARIOS.md).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  containerAddress,
  createNetwork,
  docker,
  interfacesInContainer,
  ping,
  runContainer,
  runContainerMayFail,
  uniqueName,
} from "./lib/docker.ts";
import { type HostSnapshot, hostLink, hostPeerOf } from "./lib/host.ts";
import { inCidr } from "./lib/ipv4.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-s4";
const LINK_PREFIX = "sye2e4";
const SUBNET = "10.231.4.0/24";
const GATEWAY = "10.231.4.1";
/** Small on purpose: the released address must come round again within a few containers. */
const IP_RANGE = "10.231.4.8/29";
const RANGE_SIZE = 8;

describe("S4: connect and disconnect", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const network = uniqueName(PREFIX);
  let traveller = "";
  let peerOnNetwork = "";
  let peerOnDefault = "";
  let releasedAddress = "";
  let releasedHostVeth = "";

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    await createNetwork({
      name: t.network(network),
      subnet: SUBNET,
      gateway: GATEWAY,
      ipRange: IP_RANGE,
    });
    peerOnNetwork = await runContainer({ name: t.container(uniqueName(PREFIX)), network });
    peerOnDefault = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: "bridge",
    });
    traveller = await runContainer({ name: t.container(uniqueName(PREFIX)), network: "bridge" });
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  it("a connected container has two interfaces and reaches peers on both networks", async () => {
    await docker(["network", "connect", network, traveller]);

    releasedAddress = await containerAddress(traveller, network);
    assert.ok(inCidr(releasedAddress, IP_RANGE), `${releasedAddress} is not inside ${IP_RANGE}`);

    const interfaces = (await interfacesInContainer(traveller)).filter((i) => i.name !== "lo");
    assert.deepEqual(interfaces.map((i) => i.name).sort(), ["eth0", "eth1"]);
    const eth1 = interfaces.find((i) => i.name === "eth1");
    assert.deepEqual(
      eth1?.addresses.filter((a) => !a.includes(":")),
      [`${releasedAddress}/24`],
      "eth1 does not hold the address dockerd reports",
    );

    const peer = await hostPeerOf(traveller, "eth1");
    assert.ok(peer, "eth1 has no host-side peer");
    releasedHostVeth = peer.ifname;

    const onNetwork = await containerAddress(peerOnNetwork, network);
    const onDefault = await containerAddress(peerOnDefault, "bridge");
    assert.ok(await ping(traveller, onNetwork), `cannot reach ${onNetwork} on ${network}`);
    assert.ok(await ping(traveller, onDefault), `cannot reach ${onDefault} on the default bridge`);
    assert.ok(await ping(traveller, GATEWAY), `cannot reach the gateway ${GATEWAY}`);
  });

  it("disconnect removes the interface and its host-side veth", async () => {
    assert.ok(releasedAddress, "needs the connect test to have passed");
    await docker(["network", "disconnect", network, traveller]);

    const interfaces = (await interfacesInContainer(traveller)).filter((i) => i.name !== "lo");
    assert.deepEqual(
      interfaces.map((i) => i.name),
      ["eth0"],
    );
    assert.equal(await containerAddress(traveller, network), "");
    assert.ok(
      await waitUntilGone(releasedHostVeth),
      `host veth ${releasedHostVeth} is still there`,
    );
  });

  it("the released address is handed out again", async () => {
    assert.ok(releasedAddress, "needs the connect test to have passed");
    // Allocators may hand out the lowest free address or go round the range first; either way
    // the released one must come back before the range is exhausted.
    const handedOut: string[] = [];
    let refusal = "";
    for (let i = 0; i < RANGE_SIZE; i++) {
      const name = t.container(uniqueName(PREFIX));
      const outcome = await runContainerMayFail({ name, network });
      if (outcome.exitCode !== 0) {
        refusal = outcome.stderr;
        break;
      }
      const address = await containerAddress(name, network);
      handedOut.push(address);
      if (address === releasedAddress) break;
    }
    assert.ok(
      handedOut.includes(releasedAddress),
      `${releasedAddress} never came back; handed out: ${handedOut.join(", ")}; then: ${refusal}`,
    );
  });
});

async function waitUntilGone(link: string, timeoutMs = 3_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while ((await hostLink(link)) !== undefined) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

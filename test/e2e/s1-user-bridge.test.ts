// S1 — a network on a bridge the user made (SCENARIOS.md).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { existingBridgeOption, networkDriver, SWITCHYARD_ONLY } from "./lib/config.ts";
import {
  containerAddress,
  containerGateway,
  createNetwork,
  createNetworkMayFail,
  networkDriverShown,
  networkNames,
  ping,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import {
  addHostBridge,
  addNonBridgeLink,
  bridgePorts,
  type HostSnapshot,
  hostPeerOf,
  hostPing,
  uniqueLinkName,
} from "./lib/host.ts";
import { inCidr } from "./lib/ipv4.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-s1";
const LINK_PREFIX = "sye2e1";
const SUBNET = "10.231.1.0/24";
const GATEWAY = "10.231.1.1";
const IP_RANGE = "10.231.1.128/25";

describe("S1: network on a bridge the user made", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const bridge = uniqueLinkName(LINK_PREFIX);
  const network = uniqueName(PREFIX);
  let container = "";
  let address = "";

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    await addHostBridge(t.bridge(bridge), `${GATEWAY}/24`);
    await createNetwork({
      name: t.network(network),
      subnet: SUBNET,
      gateway: GATEWAY,
      ipRange: IP_RANGE,
      options: existingBridgeOption(bridge),
    });
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  it("docker network ls shows the network with the driver under test", async () => {
    assert.equal(await networkDriverShown(network), networkDriver);
  });

  it("a container gets an address in the ip-range and its veth becomes a port of the bridge", async () => {
    const portsBefore = await bridgePorts(bridge);
    container = await runContainer({ name: t.container(uniqueName(PREFIX)), network });

    address = await containerAddress(container, network);
    assert.ok(inCidr(address, IP_RANGE), `address ${address} is not inside ${IP_RANGE}`);

    const portsAfter = await bridgePorts(bridge);
    assert.equal(portsAfter.length, portsBefore.length + 1, `ports now: ${portsAfter.join(", ")}`);
    const peer = await hostPeerOf(container);
    assert.ok(peer, "the container's eth0 has no host-side peer");
    assert.equal(peer.kind, "veth");
    assert.equal(peer.master, bridge);
    assert.ok(portsAfter.includes(peer.ifname), `${peer.ifname} is not a port of ${bridge}`);
  });

  it("the host reaches the container and the container reaches the host", async () => {
    assert.ok(await hostPing(address), `host cannot ping ${address}`);
    assert.ok(await ping(container, GATEWAY), `container cannot ping the host at ${GATEWAY}`);
  });

  it("a container on Docker's default bridge network cannot reach it", async () => {
    const outsider = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: "bridge",
    });
    // Without this the negative check below could pass merely because the outsider is broken.
    const outsiderGateway = await containerGateway(outsider, "bridge");
    assert.ok(await ping(outsider, outsiderGateway), "the default-bridge container is offline");
    assert.equal(
      await ping(outsider, address),
      false,
      `default-bridge container reached ${address}`,
    );
  });

  it("creating a network on a bridge that does not exist fails naming it", {
    skip: SWITCHYARD_ONLY,
  }, async () => {
    const missing = uniqueLinkName(LINK_PREFIX);
    const name = t.network(uniqueName(PREFIX));
    const outcome = await createNetworkMayFail({
      name,
      subnet: "10.231.11.0/24",
      options: existingBridgeOption(missing),
    });
    assert.notEqual(outcome.exitCode, 0, "docker network create succeeded");
    assert.match(outcome.stderr, new RegExp(missing), "the error does not name the bridge");
    assert.ok(!(await networkNames()).includes(name), "a network was left behind");
  });

  it("creating a network on an interface that is not a bridge fails naming it", {
    skip: SWITCHYARD_ONLY,
  }, async () => {
    const notBridge = t.link(uniqueLinkName(LINK_PREFIX));
    await addNonBridgeLink(notBridge);
    const name = t.network(uniqueName(PREFIX));
    const outcome = await createNetworkMayFail({
      name,
      subnet: "10.231.12.0/24",
      options: existingBridgeOption(notBridge),
    });
    assert.notEqual(outcome.exitCode, 0, "docker network create succeeded");
    assert.match(outcome.stderr, new RegExp(notBridge), "the error does not name the interface");
    assert.ok(!(await networkNames()).includes(name), "a network was left behind");
  });
});

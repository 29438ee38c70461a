// S2 — a user-defined bridge network the driver makes itself (SCENARIOS.md), without `-p`.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isSwitchyard } from "./lib/config.ts";
import {
  containerAddress,
  containerMac,
  createNetwork,
  exec,
  ping,
  resolveName,
  runContainer,
  runContainerMayFail,
  uniqueName,
} from "./lib/docker.ts";
import { type HostSnapshot, hostAddresses, hostLink, uniqueLinkName } from "./lib/host.ts";
import { inCidr } from "./lib/ipv4.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-s2";
const LINK_PREFIX = "sye2e2";
const SUBNET = "10.231.2.0/24";
const GATEWAY = "10.231.2.1";
const IP_RANGE = "10.231.2.128/25";
const AUX_ADDRESS = "10.231.2.129";
const STATIC_ADDRESS = "10.231.2.200";
const STATIC_MAC = "02:42:0a:e7:02:99";

describe("S2: user-defined bridge network", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const network = uniqueName(PREFIX);
  // Not tracked: removing the bridge is the driver's job, and the leftover check must see it.
  const bridge = uniqueLinkName(LINK_PREFIX);

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    await createNetwork({
      name: t.network(network),
      subnet: SUBNET,
      gateway: GATEWAY,
      ipRange: IP_RANGE,
      aux: { a: AUX_ADDRESS },
      options: { "com.docker.network.bridge.name": bridge },
    });
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  it("the driver makes the named bridge holding the gateway address", async () => {
    const link = await hostLink(bridge);
    assert.ok(link, `no host link named ${bridge}`);
    assert.equal(link.kind, "bridge");
    assert.ok(
      (await hostAddresses(bridge)).includes(`${GATEWAY}/24`),
      `${bridge} lacks ${GATEWAY}/24`,
    );
  });

  it("containers get addresses from the ip-range, never the aux address", async () => {
    const addresses: string[] = [];
    // Enough containers that a sequential allocator would have reached .129 (.128 comes first).
    for (let i = 0; i < 4; i++) {
      const name = await runContainer({ name: t.container(uniqueName(PREFIX)), network });
      addresses.push(await containerAddress(name, network));
    }
    for (const address of addresses) {
      assert.ok(inCidr(address, IP_RANGE), `address ${address} is not inside ${IP_RANGE}`);
      assert.notEqual(address, AUX_ADDRESS, "the aux address was handed out");
    }
    assert.equal(
      new Set(addresses).size,
      addresses.length,
      `duplicates in ${addresses.join(", ")}`,
    );
  });

  it("--ip gives exactly that address and a second claim on it fails clearly", async () => {
    const first = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      ip: STATIC_ADDRESS,
    });
    assert.equal(await containerAddress(first, network), STATIC_ADDRESS);
    assert.ok((await exec(first, ["ip", "-o", "addr", "show", "eth0"])).includes(STATIC_ADDRESS));

    const second = await runContainerMayFail({
      name: t.container(uniqueName(PREFIX)),
      network,
      ip: STATIC_ADDRESS,
    });
    assert.notEqual(second.exitCode, 0, "a second container got the same address");
    // Docker's built-in IPAM only says "Address already in use"; Switchyard names the address.
    if (isSwitchyard) assert.match(second.stderr, /10\.231\.2\.200/);
    else assert.match(second.stderr, /in use/i);
  });

  it("--mac-address is honoured", async () => {
    const name = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      mac: STATIC_MAC,
    });
    assert.equal(await exec(name, ["cat", "/sys/class/net/eth0/address"]), STATIC_MAC);
    assert.equal(await containerMac(name, network), STATIC_MAC);
  });

  it("containers reach each other by name, by --network-alias and by --link alias", async () => {
    const alias = uniqueName("sy-e2e-alias");
    const target = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      alias,
    });
    const client = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network,
      links: [`${target}:lnk`],
    });
    const targetAddress = await containerAddress(target, network);
    const clientAddress = await containerAddress(client, network);

    for (const name of [target, alias, "lnk"]) {
      assert.equal(await resolveName(client, name), targetAddress, `${name} resolves wrongly`);
      assert.ok(await ping(client, name), `${client} cannot ping ${name}`);
    }
    assert.equal(await resolveName(target, client), clientAddress);
    assert.ok(await ping(target, client), `${target} cannot ping ${client} by name`);
  });
});

// S8 — MTU and IPv6 (SCENARIOS.md): the MTU option reaches the container's interface and the
// host bridge; an IPv6 network gives containers both addresses, an IPv6 default route, IPv6
// reachability between them, and honours --ip6.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  containerAddress,
  createNetwork,
  exec,
  execMayFail,
  interfacesInContainer,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import { type HostSnapshot, hostLink, hostPeerOf } from "./lib/host.ts";
import { inCidr } from "./lib/ipv4.ts";
import { containerAddress6, createExtendedNetwork } from "./lib/networks.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-s8";
const LINK_PREFIX = "sye2e8";
const MTU_SUBNET = "10.231.40.0/24";
const V4_SUBNET = "10.231.41.0/24";
const V6_SUBNET = "fd00:231:41::/64";
const V6_PREFIX = "fd00:231:41:";
const STATIC_V6 = "fd00:231:41::99";

/** True when one IPv6 ping from inside `from` to `target` is answered. */
async function ping6(from: string, target: string): Promise<boolean> {
  const outcome = await execMayFail(from, ["ping6", "-c", "1", "-W", "2", target]);
  return outcome.exitCode === 0;
}

/** busybox prints IPv6 addresses in full or compressed form; compare the parsed value. */
function sameV6(a: string, b: string): boolean {
  const expand = (address: string): string => {
    const [head = "", tail = ""] = address.toLowerCase().split("::");
    const left = head === "" ? [] : head.split(":");
    const right = tail === "" ? [] : tail.split(":");
    const fill = address.includes("::") ? 8 - left.length - right.length : 0;
    return [...left, ...Array<string>(fill).fill("0"), ...right]
      .map((group) => group.padStart(4, "0"))
      .join(":");
  };
  return expand(a) === expand(b);
}

describe("S8: MTU and IPv6", () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  const mtuNetwork = uniqueName(PREFIX);
  const v6Network = uniqueName(PREFIX);

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);

    await createNetwork({
      name: t.network(mtuNetwork),
      subnet: MTU_SUBNET,
      options: { "com.docker.network.driver.mtu": "1400" },
    });
    await createExtendedNetwork({
      name: t.network(v6Network),
      subnet: V4_SUBNET,
      extraSubnets: [V6_SUBNET],
      ipv6: true,
    });
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  it("the MTU option gives the container's eth0 and the host bridge MTU 1400", async () => {
    const container = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: mtuNetwork,
    });
    const eth0 = (await interfacesInContainer(container)).find((i) => i.name === "eth0");
    assert.equal(eth0?.mtu, 1400, "container eth0 MTU");

    const peer = await hostPeerOf(container);
    assert.ok(peer?.master, "the container's veth has no host bridge");
    assert.equal(peer.mtu, 1400, `host-side veth ${peer.ifname} MTU`);
    const bridge = await hostLink(peer.master);
    assert.equal(bridge?.mtu, 1400, `host bridge ${peer.master} MTU`);
  });

  it("containers get an IPv4 and an IPv6 address and an IPv6 default route", async () => {
    const container = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: v6Network,
    });
    const v4 = await containerAddress(container, v6Network);
    const v6 = await containerAddress6(container, v6Network);
    assert.ok(inCidr(v4, V4_SUBNET), `IPv4 address ${v4} is not inside ${V4_SUBNET}`);
    assert.ok(v6.startsWith(V6_PREFIX), `IPv6 address "${v6}" is not inside ${V6_SUBNET}`);

    const eth0 = (await interfacesInContainer(container)).find((i) => i.name === "eth0");
    const global6 = (eth0?.addresses ?? []).filter((a) => a.includes(":") && !a.startsWith("fe80"));
    assert.equal(global6.length, 1, `eth0 IPv6 addresses: ${global6.join(", ")}`);
    assert.ok(sameV6(global6[0]?.split("/")[0] ?? "", v6), `eth0 holds ${global6[0]}, not ${v6}`);
    assert.equal(global6[0]?.split("/")[1], "64", "IPv6 prefix length");

    const routes = await exec(container, ["ip", "-6", "route"]);
    assert.match(routes, /^default via fd00:231:41:\S* dev eth0/m, `IPv6 routes:\n${routes}`);
  });

  it("containers reach each other over IPv6", async () => {
    const a = await runContainer({ name: t.container(uniqueName(PREFIX)), network: v6Network });
    const b = await runContainer({ name: t.container(uniqueName(PREFIX)), network: v6Network });
    const a6 = await containerAddress6(a, v6Network);
    const b6 = await containerAddress6(b, v6Network);
    assert.ok(a6 && b6, `missing IPv6 addresses: "${a6}", "${b6}"`);
    assert.ok(await ping6(a, b6), `${a} cannot ping6 ${b6}`);
    assert.ok(await ping6(b, a6), `${b} cannot ping6 ${a6}`);
  });

  it("--ip6 gives exactly that address", async () => {
    const container = await runContainer({
      name: t.container(uniqueName(PREFIX)),
      network: v6Network,
      args: ["--ip6", STATIC_V6],
    });
    assert.ok(sameV6(await containerAddress6(container, v6Network), STATIC_V6));
    const eth0 = (await interfacesInContainer(container)).find((i) => i.name === "eth0");
    assert.ok(
      eth0?.addresses.some((a) => sameV6(a.split("/")[0] ?? "", STATIC_V6)),
      `eth0 addresses: ${eth0?.addresses.join(", ")}`,
    );
    const peer = await runContainer({ name: t.container(uniqueName(PREFIX)), network: v6Network });
    assert.ok(await ping6(peer, STATIC_V6), `cannot ping6 ${STATIC_V6}`);
  });
});

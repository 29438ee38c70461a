// Regression test: Switchyard's own bridges had no fixed MAC, so the kernel gave each the
// lowest MAC of its ports; removing the container owning that port changed the gateway's MAC
// under the running containers, whose ARP entries then pointed nowhere for 30 s and more.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { NetworkDriver } from "../../src/driver/network-driver.ts";
import { parseNetworkOptions } from "../../src/driver/options.ts";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { MemoryStore } from "../support/memory-store.ts";
import { createNamespace, inNamespace, requireRoot } from "../support/netns.ts";
import { NoFirewall } from "../support/no-firewall.ts";
import { RecordingPublisher } from "../support/recording-publisher.ts";

const NETWORK = "9".repeat(64);
const BRIDGE = `sy-${"9".repeat(12)}`;

describe("the gateway MAC of a bridge Switchyard makes", () => {
  let host: ReturnType<typeof createNamespace>;
  let driver: NetworkDriver;

  const macOf = (link: string): string =>
    (
      JSON.parse(inNamespace(host.name, ["ip", "-j", "link", "show", "dev", link])) as {
        address: string;
      }[]
    )[0]?.address ?? "";

  before(async () => {
    requireRoot();
    host = createNamespace();
    const logger = pino({ level: "silent" });
    driver = new NetworkDriver({
      state: await StateManager.open(new MemoryStore(), defaultIpamSettings()),
      datapath: new IpDatapath(host.runner),
      firewall: new NoFirewall(),
      publisher: new RecordingPublisher(),
      logger,
    });
    await driver.createNetwork({
      networkId: NETWORK,
      options: parseNetworkOptions({}),
      ipv4: [{ pool: "10.203.1.0/24", gateway: "10.203.1.1/24" }],
      ipv6: [],
    });
  });

  after(() => host?.destroy());

  it("is fixed at creation and stays when the port with the lowest MAC goes", {
    timeout: 60_000,
  }, async () => {
    const gateway = macOf(BRIDGE);
    assert.equal(
      gateway,
      "02:42:0a:cb:01:01",
      "derived from the gateway address, like a container's",
    );
    for (const [name, address] of [
      ["a", "10.203.1.2/24"],
      ["b", "10.203.1.3/24"],
    ] as const) {
      await driver.createEndpoint({ networkId: NETWORK, endpointId: name.repeat(64), address });
    }
    // Give one host-side veth a MAC lower than any other: an unfixed bridge would take it.
    inNamespace(host.name, [
      "ip",
      "link",
      "set",
      "dev",
      `vsy${"a".repeat(11)}`,
      "address",
      "02:00:00:00:00:01",
    ]);
    assert.equal(macOf(BRIDGE), gateway);
    await driver.deleteEndpoint(NETWORK, "a".repeat(64));
    await driver.deleteEndpoint(NETWORK, "b".repeat(64));
    await driver.deleteNetwork(NETWORK).catch(() => undefined);
    await driver.createNetwork({
      networkId: NETWORK,
      options: parseNetworkOptions({}),
      ipv4: [{ pool: "10.203.1.0/24", gateway: "10.203.1.1/24" }],
      ipv6: [],
    });
    assert.equal(macOf(BRIDGE), gateway, "the same MAC when the bridge is made again");
    await driver.deleteNetwork(NETWORK);
  });
});

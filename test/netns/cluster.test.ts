import assert from "node:assert/strict";
import { type ChildProcess, execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { ClusterService } from "../../src/cluster/cluster.ts";
import { EtcdClient } from "../../src/cluster/etcd.ts";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { IpamDriver } from "../../src/driver/ipam-driver.ts";
import { NetworkDriver } from "../../src/driver/network-driver.ts";
import { parseNetworkOptions } from "../../src/driver/options.ts";
import { HostFirewall } from "../../src/firewall/host-firewall.ts";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { startEtcd } from "../support/etcd.ts";
import { MemoryStore } from "../support/memory-store.ts";
import { createNamespace, inNamespace, pings, requireRoot } from "../support/netns.ts";
import { RecordingPublisher } from "../support/recording-publisher.ts";

const ETCD_PORT = 23_791;
const ETCD_URL = `http://127.0.0.1:${ETCD_PORT}`;
const NETWORK_ID = "4242".padEnd(64, "0");
const SUBNET = "10.60.0.0/24";
const ip = (...argv: string[]): void => {
  execFileSync("ip", argv);
};

/** One simulated host: a namespace with its own driver stack, sharing etcd with the others. */
interface SimHost {
  ns: ReturnType<typeof createNamespace>;
  vtep: string;
  network: NetworkDriver;
  ipam: IpamDriver;
  state: StateManager;
  containers: string[];
}

/**
 * The multi-host data plane without Docker: two "hosts" are namespaces joined by an underlay
 * veth, each runs the real driver (ip, bridge, nft) against one real etcd, and "containers"
 * are namespaces holding endpoint peers, addressed as Docker would.
 */
describe("multi-host networks over VXLAN with etcd (namespaces)", () => {
  let etcd: ChildProcess | undefined;
  let stopEtcd: () => void = () => undefined;
  const hosts: SimHost[] = [];

  async function makeHost(vtep: string): Promise<SimHost> {
    const ns = createNamespace();
    inNamespace(ns.name, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    const logger = pino({ level: "silent" });
    const state = await StateManager.open(new MemoryStore(), defaultIpamSettings());
    let network: NetworkDriver | undefined;
    const cluster = new ClusterService({
      kv: new EtcdClient([ETCD_URL]),
      logger,
      identity: { hostId: ns.name, vtep },
      blockLength: 28,
      onPeers: (vni, peers) => void network?.updatePeers(vni, peers),
    });
    network = new NetworkDriver({
      state,
      datapath: new IpDatapath(ns.runner),
      firewall: new HostFirewall(ns.runner, logger, "nft"),
      publisher: new RecordingPublisher(),
      logger,
      cluster,
    });
    return {
      ns,
      vtep,
      network,
      ipam: new IpamDriver({ state, hostPrefixes: async () => [], cluster, logger }),
      state,
      containers: [],
    };
  }

  /** What dockerd does for `docker network create -o vxlan.id=4242 --subnet 10.60.0.0/24`. */
  async function createNetwork(host: SimHost): Promise<string> {
    const { poolId } = await host.ipam.requestPool({ addressSpace: "LocalDefault", pool: SUBNET });
    await host.ipam.requestAddress({
      poolId,
      options: { RequestAddressType: "com.docker.network.gateway" },
    });
    await host.network.createNetwork({
      networkId: NETWORK_ID,
      options: parseNetworkOptions({ "com.docker.network.generic": { "vxlan.id": "4242" } }),
      ipv4: [{ pool: SUBNET, gateway: "10.60.0.1/24" }],
      ipv6: [],
    });
    return poolId;
  }

  /** What dockerd does for `docker run --network mesh`, then a namespace as the container. */
  async function runContainer(
    host: SimHost,
    poolId: string,
    name: string,
    staticIp?: string,
  ): Promise<string> {
    const address = await host.ipam.requestAddress({
      poolId,
      ...(staticIp === undefined ? {} : { address: staticIp }),
    });
    const endpointId = name.padEnd(64, "0");
    await host.network.createEndpoint({ networkId: NETWORK_ID, endpointId, address });
    const joined = await host.network.join(NETWORK_ID, endpointId);
    const container = `${host.ns.name}-${name}`;
    ip("netns", "add", container);
    host.containers.push(container);
    ip("-n", host.ns.name, "link", "set", joined.srcName, "netns", container);
    ip("-n", container, "link", "set", joined.srcName, "name", "eth0");
    ip("-n", container, "addr", "add", address, "dev", "eth0");
    ip("-n", container, "link", "set", "eth0", "up");
    ip("-n", container, "link", "set", "lo", "up");
    if (joined.gateway !== undefined)
      ip("-n", container, "route", "add", "default", "via", joined.gateway);
    return address.split("/")[0] ?? address;
  }

  before(async () => {
    requireRoot();
    const started = await startEtcd(ETCD_PORT);
    etcd = started.process;
    stopEtcd = started.stop;
    const a = await makeHost("10.250.1.1");
    const b = await makeHost("10.250.1.2");
    hosts.push(a, b);
    // The underlay between the two hosts.
    ip(
      "-n",
      a.ns.name,
      "link",
      "add",
      "under0",
      "type",
      "veth",
      "peer",
      "name",
      "under0",
      "netns",
      b.ns.name,
    );
    for (const host of hosts) {
      ip("-n", host.ns.name, "addr", "add", `${host.vtep}/24`, "dev", "under0");
      ip("-n", host.ns.name, "link", "set", "under0", "up");
    }
  });

  after(async () => {
    for (const host of hosts) {
      for (const container of host.containers) {
        try {
          ip("netns", "del", container);
        } catch {}
      }
      host.ns.destroy();
    }
    stopEtcd();
  });

  const addresses: string[] = [];
  const pools: string[] = [];

  it("containers on two hosts reach each other over VXLAN; each host has the same gateway", async () => {
    const [a, b] = hosts as [SimHost, SimHost];
    pools.push(await createNetwork(a));
    // Another subnet under the same vxlan.id is refused by what etcd holds, before anything is made.
    const other = await b.ipam.requestPool({ addressSpace: "LocalDefault", pool: "10.61.0.0/24" });
    await assert.rejects(
      b.network.createNetwork({
        networkId: NETWORK_ID,
        options: parseNetworkOptions({ "com.docker.network.generic": { "vxlan.id": "4242" } }),
        ipv4: [{ pool: "10.61.0.0/24", gateway: "10.61.0.1/24" }],
        ipv6: [],
      }),
      /vxlan\.id 4242 is already used with subnet 10\.60\.0\.0\/24 and gateway 10\.60\.0\.1\/24 on other hosts/,
    );
    await b.ipam.releasePool(other.poolId);
    pools.push(await createNetwork(b));
    addresses.push(await runContainer(a, pools[0] ?? "", "a1"));
    addresses.push(await runContainer(b, pools[1] ?? "", "b1"));
    addresses.push(await runContainer(b, pools[1] ?? "", "b2", "10.60.0.200"));
    const [a1, b1, b2] = addresses;
    assert.notEqual(a1, b1, "blocks keep hosts' addresses apart");
    assert.equal(b2, "10.60.0.200", "a static address is given exactly");
    await sleep(300); // flood entries follow the etcd watch
    assert.equal(pings(`${a.ns.name}-a1`, b1 ?? ""), true, "a1 reaches b1 on the other host");
    assert.equal(pings(`${b.ns.name}-b2`, a1 ?? ""), true, "b2 reaches a1 on the other host");
    assert.equal(pings(`${a.ns.name}-a1`, "10.60.0.1"), true, "the gateway answers locally");
    const mtu = inNamespace(`${a.ns.name}-a1`, ["cat", "/sys/class/net/eth0/mtu"]).trim();
    assert.equal(mtu, "1450", "MTU leaves room for the VXLAN header");
  });

  it("a static address is refused on the other host", async () => {
    const [a, b] = hosts as [SimHost, SimHost];
    await assert.rejects(
      a.ipam.requestAddress({ poolId: pools[0] ?? "", address: "10.60.0.200" }),
      /10\.60\.0\.200 is already in use on another host/,
    );
    // An address inside the block the other host hands out from is refused too, naming it.
    await assert.rejects(
      b.ipam.requestAddress({ poolId: pools[1] ?? "", address: addresses[0] ?? "" }),
      new RegExp(`from which host ${a.ns.name} hands out addresses on vxlan\\.id 4242`),
    );
  });

  it("with etcd stopped, running containers stay connected and claimed blocks still serve", async () => {
    const [a, b] = hosts as [SimHost, SimHost];
    etcd?.kill("SIGSTOP");
    try {
      assert.equal(pings(`${a.ns.name}-a1`, addresses[1] ?? ""), true);
      const another = await runContainer(a, pools[0] ?? "", "a2");
      assert.ok(!addresses.includes(another));
      addresses.push(another);
      assert.equal(pings(`${b.ns.name}-b1`, another), true);
    } finally {
      etcd?.kill("SIGCONT");
    }
  });

  it("removing the network on every host leaves nothing in etcd nor on the hosts", async () => {
    for (const host of hosts) {
      for (const endpoint of Object.keys(host.state.document.endpoints)) {
        await host.network.leave(NETWORK_ID, endpoint);
        await host.network.deleteEndpoint(NETWORK_ID, endpoint);
      }
      await host.network.deleteNetwork(NETWORK_ID);
    }
    assert.deepEqual(await new EtcdClient([ETCD_URL]).range("switchyard/"), []);
    for (const host of hosts) {
      assert.doesNotMatch(inNamespace(host.ns.name, ["ip", "-br", "link"]), /syvx|sy-|vsy/);
      assert.doesNotMatch(inNamespace(host.ns.name, ["nft", "list", "ruleset"]), /switchyard/);
    }
  });
});

import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type Logger, pino } from "pino";
import {
  type ClusterNetworkConfig,
  ClusterService,
  type OwnedClaims,
  renewalDelay,
} from "../../src/cluster/cluster.ts";
import { eventually } from "../support/eventually.ts";
import { MemoryKeyValueStore } from "../support/memory-kv.ts";

const ROOT = "switchyard/v1/networks";
const VNI = 4242;
const SUBNET = "10.60.0.0/24";
const CONFIG: ClusterNetworkConfig = { subnet: SUBNET, gateway: "10.60.0.1/24" };
const ALL_BLOCKS = ["10.60.0.0/26", "10.60.0.64/26", "10.60.0.128/26", "10.60.0.192/26"];
const TIMEOUT = { timeout: 10_000 };
/** The network's record in etcd: the config, and the block length the first host chose. */
const STORED_CONFIG = JSON.stringify({ ...CONFIG, blockLength: 26 });

/** One simulated host: its ClusterService and the peers it was last told about, per network. */
interface Host {
  id: string;
  vtep: string;
  cluster: ClusterService;
  peers: Map<number, string[]>;
}

const running: ClusterService[] = [];

/** Every test stops its hosts' watches and keep-alives, so the test process can exit. */
afterEach(() => {
  for (const cluster of running.splice(0)) cluster.stop();
});

/** What a host's local state holds, per network (what its IPAM driver would record). */
type LocalClaims = Map<number, OwnedClaims>;

function makeHost(
  kv: MemoryKeyValueStore,
  id: string,
  vtep: string,
  blockLength = 26,
  options: {
    local?: LocalClaims;
    renewalDelay?: (failures: number) => number;
    watchIdleMs?: number;
    logger?: Logger;
    retryDelay?: (failures: number) => number;
    rejoinDelayMs?: number;
  } = {},
): Host {
  const peers = new Map<number, string[]>();
  const local = options.local;
  const cluster = new ClusterService({
    kv,
    logger: options.logger ?? pino({ level: "silent" }),
    identity: { hostId: id, vtep },
    blockLength,
    onPeers: (vni, list) => peers.set(vni, list),
    ...(local === undefined
      ? {}
      : { ownedClaims: (vni: number) => local.get(vni) ?? { blocks: [], statics: [] } }),
    ...(options.renewalDelay === undefined ? {} : { renewalDelay: options.renewalDelay }),
    ...(options.watchIdleMs === undefined ? {} : { watchIdleMs: options.watchIdleMs }),
    ...(options.retryDelay === undefined ? {} : { retryDelay: options.retryDelay }),
    ...(options.rejoinDelayMs === undefined ? {} : { rejoinDelayMs: options.rejoinDelayMs }),
  });
  running.push(cluster);
  return { id, vtep, cluster, peers };
}

/** A logger that keeps what it logs at warn and above, as parsed lines. */
function recordingLogger(): { logger: Logger; lines: { msg: string; [field: string]: unknown }[] } {
  const lines: { msg: string; [field: string]: unknown }[] = [];
  const logger = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

/** Every host joins every network given (VNI alone by default). */
async function joinAll(hosts: Host[], vnis = [VNI]): Promise<void> {
  for (const vni of vnis) for (const host of hosts) await host.cluster.joinNetwork(vni, CONFIG);
}

/** What the store holds under one network, as key (below the network) → value. */
async function contents(kv: MemoryKeyValueStore, vni = VNI): Promise<Record<string, string>> {
  const base = `${ROOT}/${vni}/`;
  const entries = await kv.range(base);
  return Object.fromEntries(entries.map((entry) => [entry.key.slice(base.length), entry.value]));
}

/** The claims under one network (blocks and static addresses), as key → holder. */
async function claims(kv: MemoryKeyValueStore, vni = VNI): Promise<Record<string, string>> {
  const all = await contents(kv, vni);
  return Object.fromEntries(
    Object.entries(all).filter(
      ([key]) => key.startsWith("blocks/") || key.startsWith("addresses/"),
    ),
  );
}

/** The lease a host's registration in a network hangs on. */
async function leaseOf(kv: MemoryKeyValueStore, host: Host, vni = VNI): Promise<string> {
  const [entry] = await kv.range(`${ROOT}/${vni}/hosts/${host.id}`);
  assert.ok(entry?.lease !== undefined, `${host.id} is registered in ${vni} with a lease`);
  return entry.lease;
}

describe("ClusterService: address blocks", () => {
  it("two hosts claiming at the same time never get the same block", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await Promise.all([a.cluster.joinNetwork(VNI, CONFIG), b.cluster.joinNetwork(VNI, CONFIG)]);

    const claims = await Promise.all([
      a.cluster.claimBlock(VNI, SUBNET, []),
      b.cluster.claimBlock(VNI, SUBNET, []),
      a.cluster.claimBlock(VNI, SUBNET, []),
      b.cluster.claimBlock(VNI, SUBNET, []),
    ]);

    assert.deepEqual([...claims].sort(), [...ALL_BLOCKS].sort(), "four different blocks");
    const stored = await contents(kv);
    assert.equal(stored[`blocks/${claims[0]?.replace("/", "_")}`], "host-a");
    assert.equal(stored[`blocks/${claims[1]?.replace("/", "_")}`], "host-b");
    assert.equal(stored[`blocks/${claims[2]?.replace("/", "_")}`], "host-a");
    assert.equal(stored[`blocks/${claims[3]?.replace("/", "_")}`], "host-b");
  });

  it(
    "hands out the subnet's blocks of the configured length in order, then Exhausted",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      const b = makeHost(kv, "host-b", "192.0.2.2");
      const held: string[] = [];
      for (let claim = 0; claim < 3; claim++)
        held.push(await a.cluster.claimBlock(VNI, SUBNET, held));
      assert.deepEqual(await b.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.192/26");
      assert.deepEqual(held, ALL_BLOCKS.slice(0, 3));

      for (const host of [a, b]) {
        await assert.rejects(host.cluster.claimBlock(VNI, SUBNET, held), {
          kind: "Exhausted",
          message: "no free address block left in 10.60.0.0/24 (every /26 is held by a host)",
        });
      }
    },
  );

  it(
    "a block length shorter than the subnet's gives the whole subnet as one block",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1", 16);
      assert.equal(await a.cluster.claimBlock(VNI, SUBNET, []), SUBNET);
      await assert.rejects(a.cluster.claimBlock(VNI, SUBNET, [SUBNET]), { kind: "Exhausted" });
    },
  );

  it(
    "a claim resent after its reply was lost adopts the block, not a second one",
    TIMEOUT,
    async () => {
      // Regression: the claim's transaction went through in etcd but its reply was lost; the
      // retried claimBlock took another block, and the first stayed this host's for nothing.
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      await a.cluster.joinNetwork(VNI, CONFIG);
      const txn = kv.txn.bind(kv);
      let loseReply = true;
      kv.txn = async (request) => {
        const result = await txn(request);
        if (loseReply) {
          loseReply = false;
          throw new Error("etcd: reply lost after the transaction was applied");
        }
        return result;
      };
      await assert.rejects(a.cluster.claimBlock(VNI, SUBNET, []), /reply lost/);
      assert.equal(await a.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.0/26");
      assert.deepEqual(await claims(kv), { "blocks/10.60.0.0_26": "host-a" });
      assert.equal(await a.cluster.claimBlock(VNI, SUBNET, ["10.60.0.0/26"]), "10.60.0.64/26");
    },
  );

  it(
    "a block etcd gives this host is adopted only where the --ip-range allows",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const local: LocalClaims = new Map([[VNI, { blocks: ["10.60.0.64/26"], statics: [] }]]);
      const a = makeHost(kv, "host-a", "192.0.2.1", 26, { local });
      await a.cluster.joinNetwork(VNI, CONFIG);
      await kv.put(`${ROOT}/${VNI}/blocks/10.60.0.0_26`, "host-a");
      assert.equal(
        await a.cluster.claimBlock(VNI, SUBNET, ["10.60.0.64/26"], "10.60.0.128/25"),
        "10.60.0.128/26",
      );
      assert.equal(await a.cluster.claimBlock(VNI, SUBNET, ["10.60.0.64/26"]), "10.60.0.0/26");
    },
  );

  it("skips blocks this host already holds even when the store lost them", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    assert.equal(await a.cluster.claimBlock(VNI, SUBNET, ["10.60.0.0/26"]), "10.60.0.64/26");
  });
});

describe("ClusterService: static addresses", () => {
  it(
    "an address held by one host is a Conflict for another, naming the holder",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      const b = makeHost(kv, "host-b", "192.0.2.2");
      await joinAll([a, b], [VNI, 4243]);
      await a.cluster.claimAddress(VNI, "10.60.0.10");

      await assert.rejects(b.cluster.claimAddress(VNI, "10.60.0.10"), {
        kind: "Conflict",
        message: "address 10.60.0.10 is already in use on another host (host-a) of vxlan.id 4242",
      });
      await a.cluster.claimAddress(VNI, "10.60.0.10");
      await b.cluster.claimAddress(VNI, "10.60.0.11");
      await b.cluster.claimAddress(4243, "10.60.0.10");
      assert.deepEqual(await claims(kv), {
        "addresses/10.60.0.10": "host-a",
        "addresses/10.60.0.11": "host-b",
      });
    },
  );

  it("two hosts claiming one address at the same time: exactly one gets it", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await joinAll([a, b]);
    const results = await Promise.allSettled([
      a.cluster.claimAddress(VNI, "10.60.0.10"),
      b.cluster.claimAddress(VNI, "10.60.0.10"),
    ]);
    assert.deepEqual(results.map((result) => result.status).sort(), ["fulfilled", "rejected"]);
  });

  it("releasing gives back only this host's claims", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await joinAll([a, b]);
    await a.cluster.claimAddress(VNI, "10.60.0.10");
    await b.cluster.claimAddress(VNI, "10.60.0.11");

    await b.cluster.releaseAddress(VNI, "10.60.0.10");
    await a.cluster.releaseAddress(VNI, "10.60.0.11");
    await a.cluster.releaseAddress(VNI, "10.60.0.12");
    assert.deepEqual(await claims(kv), {
      "addresses/10.60.0.10": "host-a",
      "addresses/10.60.0.11": "host-b",
    });

    await a.cluster.releaseAddress(VNI, "10.60.0.10");
    await b.cluster.claimAddress(VNI, "10.60.0.10");
    assert.deepEqual(await claims(kv), {
      "addresses/10.60.0.10": "host-b",
      "addresses/10.60.0.11": "host-b",
    });
  });
});

describe("ClusterService: joining and leaving", () => {
  it(
    "joining with another subnet or gateway than the recorded one is a Conflict",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      const b = makeHost(kv, "host-b", "192.0.2.2");
      await a.cluster.joinNetwork(VNI, CONFIG);

      const expected = {
        kind: "Conflict",
        message:
          "vxlan.id 4242 is already used with subnet 10.60.0.0/24 and gateway 10.60.0.1/24 on other hosts; create the network with the same --subnet and --gateway on every host",
      };
      await assert.rejects(
        b.cluster.joinNetwork(VNI, { subnet: "10.61.0.0/24", gateway: "10.61.0.1/24" }),
        expected,
      );
      await assert.rejects(
        b.cluster.joinNetwork(VNI, { ...CONFIG, gateway: "10.60.0.254/24" }),
        expected,
      );
      assert.deepEqual(
        Object.keys(await contents(kv)),
        ["config", "hosts/host-a"],
        "B not registered",
      );

      await b.cluster.joinNetwork(VNI, CONFIG);
      await a.cluster.joinNetwork(VNI, CONFIG);
      assert.deepEqual(await contents(kv), {
        config: STORED_CONFIG,
        "hosts/host-a": "192.0.2.1",
        "hosts/host-b": "192.0.2.2",
      });
    },
  );

  it(
    "a host leaving drops only its own entries; the last one clears the network",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      const b = makeHost(kv, "host-b", "192.0.2.2");
      await a.cluster.joinNetwork(VNI, CONFIG);
      await b.cluster.joinNetwork(VNI, CONFIG);
      await a.cluster.claimBlock(VNI, SUBNET, []);
      const bBlock = await b.cluster.claimBlock(VNI, SUBNET, []);
      await a.cluster.claimAddress(VNI, "10.60.0.200");
      await b.cluster.claimAddress(VNI, "10.60.0.201");
      await a.cluster.joinNetwork(4243, CONFIG);

      await a.cluster.leaveNetwork(VNI);
      assert.deepEqual(await contents(kv), {
        config: STORED_CONFIG,
        "addresses/10.60.0.201": "host-b",
        [`blocks/${bBlock.replace("/", "_")}`]: "host-b",
        "hosts/host-b": "192.0.2.2",
      });
      assert.deepEqual(Object.keys(await contents(kv, 4243)), ["config", "hosts/host-a"]);

      await b.cluster.leaveNetwork(VNI);
      assert.deepEqual(await contents(kv), {});
      assert.equal(kv.leases.length, 1, "B's lease went with its last network; A still has 4243");
      await a.cluster.leaveNetwork(4243);
      assert.deepEqual(await kv.range(""), []);
      assert.deepEqual(kv.leases, []);
    },
  );
});

describe("ClusterService: following peers", () => {
  it("a host sees others join and leave, each network on its own", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    const c = makeHost(kv, "host-c", "192.0.2.3");
    await a.cluster.joinNetwork(VNI, CONFIG);
    await eventually(() => assert.deepEqual(a.peers.get(VNI), []));

    await b.cluster.joinNetwork(VNI, CONFIG);
    await c.cluster.joinNetwork(4243, CONFIG);
    await eventually(() => assert.deepEqual(a.peers.get(VNI), ["192.0.2.2"]));
    await eventually(() => assert.deepEqual(b.peers.get(VNI), ["192.0.2.1"]));

    await c.cluster.joinNetwork(VNI, CONFIG);
    await eventually(() => assert.deepEqual(a.peers.get(VNI), ["192.0.2.2", "192.0.2.3"]));
    assert.deepEqual(c.peers.get(4243), [], "nobody else is in 4243");

    await b.cluster.leaveNetwork(VNI);
    await eventually(() => assert.deepEqual(a.peers.get(VNI), ["192.0.2.3"]));
    await eventually(() => assert.deepEqual(c.peers.get(VNI), ["192.0.2.1"]));
  });

  it(
    "a malformed peer value is skipped and logged once; later peers still come through",
    TIMEOUT,
    async () => {
      // Regression: one host key whose value was no address (a hostile or newer writer) went
      // into every peer list; the driver's flood-list update then failed on it each time, so no
      // later peer reached the VXLAN device or the firewall.
      const kv = new MemoryKeyValueStore();
      const { logger, lines } = recordingLogger();
      const a = makeHost(kv, "host-a", "192.0.2.1", 26, { logger });
      const b = makeHost(kv, "host-b", "192.0.2.2");
      const c = makeHost(kv, "host-c", "192.0.2.3");
      await a.cluster.joinNetwork(VNI, CONFIG);
      await kv.put(`${ROOT}/${VNI}/hosts/host-x`, "192.0.2.9; drop");
      await kv.put(`${ROOT}/${VNI}/hosts/host-y/extra`, "192.0.2.8");
      await b.cluster.joinNetwork(VNI, CONFIG);
      await eventually(() => assert.deepEqual(a.peers.get(VNI), ["192.0.2.2"]));
      await c.cluster.joinNetwork(VNI, CONFIG);
      await eventually(() => assert.deepEqual(a.peers.get(VNI), ["192.0.2.2", "192.0.2.3"]));
      const skipped = lines.filter((line) => line.msg.includes("malformed peer"));
      assert.deepEqual(
        skipped.map((line) => line.key),
        ["hosts/host-x", "hosts/host-y/extra"],
        "each logged once",
      );
    },
  );

  it("a host whose lease runs out disappears from the others' peers", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await a.cluster.joinNetwork(VNI, CONFIG);
    await b.cluster.joinNetwork(VNI, CONFIG);
    await eventually(() => assert.deepEqual(a.peers.get(VNI), ["192.0.2.2"]));

    // A keeps renewing, B has stopped (a dead host): past the 15 s TTL only B is gone.
    kv.advance(10);
    await a.cluster.renewLease();
    kv.advance(10);
    await eventually(() => assert.deepEqual(a.peers.get(VNI), []));
    assert.deepEqual(Object.keys(await contents(kv)), ["config", "hosts/host-a"]);
  });
});

describe("ClusterService: losing the lease", () => {
  it("renewal registers the host again after its lease expired", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await a.cluster.joinNetwork(VNI, CONFIG);
    await b.cluster.joinNetwork(VNI, CONFIG);
    await eventually(() => assert.deepEqual(b.peers.get(VNI), ["192.0.2.1"]));
    const lost = await leaseOf(kv, a);

    kv.expireLease(lost);
    await eventually(() => assert.deepEqual(b.peers.get(VNI), []));
    await a.cluster.renewLease();

    assert.notEqual(await leaseOf(kv, a), lost, "registered on a new lease");
    assert.equal((await contents(kv))["hosts/host-a"], "192.0.2.1");
    await eventually(() => assert.deepEqual(b.peers.get(VNI), ["192.0.2.1"]));
  });

  it("renewal while etcd is away changes nothing; once back it re-registers", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await a.cluster.joinNetwork(VNI, CONFIG);
    await b.cluster.joinNetwork(VNI, CONFIG);
    await eventually(() => assert.deepEqual(b.peers.get(VNI), ["192.0.2.1"]));

    kv.unavailable = true;
    await a.cluster.renewLease();
    await assert.rejects(a.cluster.claimBlock(VNI, SUBNET, []), { kind: "Internal" });
    // Both leases run out at the store while nobody can reach it.
    kv.advance(20);
    kv.unavailable = false;
    assert.deepEqual(Object.keys(await contents(kv)), ["config"]);

    await a.cluster.renewLease();
    await b.cluster.renewLease();
    assert.deepEqual(Object.keys(await contents(kv)), ["config", "hosts/host-a", "hosts/host-b"]);
    // B's watch broke with the connection; it lists again and finds A.
    await eventually(() => assert.deepEqual(b.peers.get(VNI), ["192.0.2.1"]));
  });

  it("resume rejoins every network once the store answers", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    kv.unavailable = true;
    a.cluster.resume([
      { vni: VNI, config: CONFIG },
      { vni: 4243, config: CONFIG },
    ]);
    await sleep(20);
    kv.unavailable = false;
    await eventually(async () => {
      assert.deepEqual(Object.keys(await contents(kv)), ["config", "hosts/host-a"]);
      assert.deepEqual(Object.keys(await contents(kv, 4243)), ["config", "hosts/host-a"]);
    });
  });

  it("networks joined at the same time share one kept-alive lease", TIMEOUT, async () => {
    // Regression: concurrent joins (resume() rejoins all networks at once) each granted a
    // lease; only the last was kept alive, so the host vanished from the other networks
    // 15 s later and renewal never noticed.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    await Promise.all([a.cluster.joinNetwork(VNI, CONFIG), a.cluster.joinNetwork(4243, CONFIG)]);

    for (let tick = 0; tick < 4; tick++) {
      kv.advance(5);
      await a.cluster.renewLease();
    }
    assert.equal((await contents(kv))["hosts/host-a"], "192.0.2.1");
    assert.equal((await contents(kv, 4243))["hosts/host-a"], "192.0.2.1");
    assert.equal(kv.leases.length, 1, "no second lease left to run out");
  });

  it(
    "a renewal that fails after the lease was lost is retried by the next one",
    TIMEOUT,
    async () => {
      // Regression: the lost lease stopped the keep-alive timer before the new grant; when the
      // grant failed, nothing ever tried again and the host stayed unregistered.
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      await a.cluster.joinNetwork(VNI, CONFIG);
      kv.expireLease(await leaseOf(kv, a));

      kv.failing.add("grantLease");
      await a.cluster.renewLease();
      kv.failing.clear();
      await a.cluster.renewLease();
      assert.equal((await contents(kv))["hosts/host-a"], "192.0.2.1");
    },
  );

  it("a re-registration cut short is finished by the next renewal", TIMEOUT, async () => {
    // Regression: once a new lease was granted, the next renewal only kept it alive; networks
    // whose registration had failed stayed without this host.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    await a.cluster.joinNetwork(VNI, CONFIG);
    await a.cluster.joinNetwork(4243, CONFIG);
    kv.expireLease(await leaseOf(kv, a));

    kv.failing.add("put");
    await a.cluster.renewLease();
    kv.failing.clear();
    await a.cluster.renewLease();
    assert.equal((await contents(kv))["hosts/host-a"], "192.0.2.1");
    assert.equal((await contents(kv, 4243))["hosts/host-a"], "192.0.2.1");
  });
});

describe("ClusterService: never one address from two hosts", () => {
  it(
    "a static address inside another host's block is refused, naming the holder",
    TIMEOUT,
    async () => {
      // Regression: a --ip inside a block another host hands out from was accepted, so both
      // hosts could give 10.60.0.5 to a container.
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      const b = makeHost(kv, "host-b", "192.0.2.2");
      await joinAll([a, b]);
      assert.equal(await a.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.0/26");

      await assert.rejects(b.cluster.claimAddress(VNI, "10.60.0.5"), {
        kind: "Conflict",
        message:
          "address 10.60.0.5 is in address block 10.60.0.0/26, from which host host-a hands out addresses on vxlan.id 4242; take a static address outside the hosts' blocks (e.g. give the network an --ip-range for automatic addresses and use --ip outside it)",
      });
      await a.cluster.claimAddress(VNI, "10.60.0.5");
      await b.cluster.claimAddress(VNI, "10.60.0.70");
      assert.deepEqual(await claims(kv), {
        "addresses/10.60.0.5": "host-a",
        "addresses/10.60.0.70": "host-b",
        "blocks/10.60.0.0_26": "host-a",
      });
    },
  );

  it("a block holding another host's static address is not claimed", TIMEOUT, async () => {
    // Regression: B's --ip 10.60.0.10 was taken before any block; A then claimed 10.60.0.0/26
    // and could hand 10.60.0.10 out again.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await joinAll([a, b]);
    await b.cluster.claimAddress(VNI, "10.60.0.10");
    await b.cluster.claimAddress(VNI, "10.60.0.250");

    assert.equal(await a.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.64/26");
    assert.equal(await a.cluster.claimBlock(VNI, SUBNET, ["10.60.0.64/26"]), "10.60.0.128/26");
    await assert.rejects(a.cluster.claimBlock(VNI, SUBNET, ["10.60.0.64/26", "10.60.0.128/26"]), {
      kind: "Exhausted",
      message:
        "no free address block left in 10.60.0.0/24 (every /26 is held by a host or holds another host's static address)",
    });
    assert.equal(await b.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.0/26", "B's own is fine");
  });

  it("a static address and a block claimed at the same time never overlap", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    for (let round = 0; round < 20; round++) {
      const vni = 5000 + round;
      const a = makeHost(kv, `a${round}`, "192.0.2.1");
      const b = makeHost(kv, `b${round}`, "192.0.2.2");
      await joinAll([a, b], [vni]);
      const [block, address] = await Promise.allSettled([
        a.cluster.claimBlock(vni, SUBNET, []),
        b.cluster.claimAddress(vni, "10.60.0.10"),
      ]);
      const stored = await claims(kv, vni);
      const aHoldsBlock0 = stored["blocks/10.60.0.0_26"] === `a${round}`;
      const bHoldsStatic = stored["addresses/10.60.0.10"] === `b${round}`;
      assert.ok(!(aHoldsBlock0 && bHoldsStatic), `round ${round}: ${JSON.stringify(stored)}`);
      assert.equal(block.status, "fulfilled");
      if (address.status === "rejected") assert.ok(aHoldsBlock0);
    }
  });

  it("blocks are carved from the pool's --ip-range, aligned to the subnet", TIMEOUT, async () => {
    // Regression: with --ip-range 10.60.0.128/25 each failed automatic address claimed one
    // more block from the start of the subnet (none of them usable), leaking blocks.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    const range = "10.60.0.128/25";
    assert.equal(await a.cluster.claimBlock(VNI, SUBNET, [], range), "10.60.0.128/26");
    assert.equal(await b.cluster.claimBlock(VNI, SUBNET, [], range), "10.60.0.192/26");
    await assert.rejects(a.cluster.claimBlock(VNI, SUBNET, ["10.60.0.128/26"], range), {
      kind: "Exhausted",
      message:
        "no free address block left in IP range 10.60.0.128/25 of 10.60.0.0/24 (every /26 is held by a host)",
    });
    // A range smaller than a block gets the aligned block around it, never a smaller one
    // that would overlap another host's block.
    assert.equal(await a.cluster.claimBlock(4243, SUBNET, [], "10.60.0.40/29"), "10.60.0.0/26");
    assert.deepEqual(Object.keys(await claims(kv)), [
      "blocks/10.60.0.128_26",
      "blocks/10.60.0.192_26",
    ]);
  });

  it("every host uses the block length the first host recorded", TIMEOUT, async () => {
    // Regression: hosts with different ADDRESS_BLOCK_SIZE claimed overlapping blocks (a /24
    // over another host's /26) and handed out the same addresses.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1", 26);
    const b = makeHost(kv, "host-b", "192.0.2.2", 24);
    await joinAll([a, b]);
    assert.equal(await a.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.0/26");
    assert.equal(await b.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.64/26");
    await assert.rejects(b.cluster.claimAddress(VNI, "10.60.0.3"), { kind: "Conflict" });
  });
});

describe("ClusterService: a leave etcd did not take", () => {
  it("is retried in the background until this host's claims are gone", TIMEOUT, async () => {
    // Regression: leaveNetwork threw while etcd was away, the caller answered docker network
    // rm with OK, and nothing tried again: the host's blocks and statics stayed claimed.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1", 26, { retryDelay: () => 10 });
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await joinAll([a, b]);
    await a.cluster.claimBlock(VNI, SUBNET, []);
    await a.cluster.claimAddress(VNI, "10.60.0.200");
    kv.unavailable = true;
    await assert.rejects(a.cluster.leaveNetwork(VNI), { kind: "Internal" });
    assert.equal(a.cluster.isJoined(VNI), false);
    assert.deepEqual(a.cluster.leavesPending(), [VNI]);
    await sleep(30);
    kv.unavailable = false;
    await eventually(async () =>
      assert.deepEqual(await contents(kv), { config: STORED_CONFIG, "hosts/host-b": "192.0.2.2" }),
    );
    await eventually(() => assert.deepEqual(a.cluster.leavesPending(), []));
    // The lease goes after the leave is done, not with it.
    await eventually(() =>
      assert.equal(kv.leases.length, 1, "A's lease went with its last leave; B's is left"),
    );
  });

  it("keeps the lease alive while pending, and drops it once done", TIMEOUT, async () => {
    // Regression: the failed leave of the last network revoked the lease at once, so nothing
    // kept the host's share of the network in order while the leave was still to be done.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1", 26, { retryDelay: () => 10 });
    await a.cluster.joinNetwork(VNI, CONFIG);
    const lease = await leaseOf(kv, a);
    await a.cluster.claimBlock(VNI, SUBNET, []);
    kv.failing.add("txn");
    await assert.rejects(a.cluster.leaveNetwork(VNI));
    await sleep(30);
    assert.deepEqual(kv.leases, [lease], "not revoked while the leave is pending");
    kv.advance(10);
    assert.equal(await a.cluster.renewLease(), true);
    kv.advance(10);
    assert.deepEqual(kv.leases, [lease], "kept alive");
    kv.failing.clear();
    await eventually(async () => assert.deepEqual(await kv.range(""), []));
    await eventually(() => assert.deepEqual(kv.leases, []));
  });

  it("is called off when the network is created here again", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1", 26, { retryDelay: () => 10 });
    await a.cluster.joinNetwork(VNI, CONFIG);
    await a.cluster.claimBlock(VNI, SUBNET, []);
    kv.failing.add("txn");
    await assert.rejects(a.cluster.leaveNetwork(VNI));
    kv.failing.clear();
    await a.cluster.joinNetwork(VNI, CONFIG, { fresh: true });
    assert.deepEqual(a.cluster.leavesPending(), []);
    await sleep(50);
    assert.deepEqual(await contents(kv), { config: STORED_CONFIG, "hosts/host-a": "192.0.2.1" });
  });
});

describe("ClusterService: restart-time re-joins", () => {
  it("a re-join still retrying is called off by leaving the network", TIMEOUT, async () => {
    // Regression: resume()'s retry timers outlived docker network rm: once etcd answered they
    // joined the deleted network again, writing its config and this host's registration.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1", 26, { retryDelay: () => 10, rejoinDelayMs: 20 });
    kv.unavailable = true;
    a.cluster.resume([
      { vni: VNI, config: CONFIG },
      { vni: 4243, config: CONFIG },
    ]);
    await sleep(30);
    await assert.rejects(a.cluster.leaveNetwork(VNI));
    kv.unavailable = false;
    await eventually(async () =>
      assert.deepEqual(Object.keys(await contents(kv, 4243)), ["config", "hosts/host-a"]),
    );
    await sleep(100);
    assert.deepEqual(await contents(kv), {}, "the network left stays gone");
  });

  it("stop() calls off the re-joins too", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1", 26, { rejoinDelayMs: 20 });
    kv.unavailable = true;
    a.cluster.resume([{ vni: VNI, config: CONFIG }]);
    await sleep(30);
    a.cluster.stop();
    await sleep(30); // a try in flight fails too
    kv.unavailable = false;
    await sleep(100);
    assert.deepEqual(await kv.range(""), []);
  });
});

describe("ClusterService: one lease for joins and leaves at once", () => {
  it("leaving the last network never revokes the lease of a join in flight", TIMEOUT, async () => {
    // Regression: leaving the only joined network dropped the lease while another join
    // already held the shared lease's promise: the join registered on a revoked lease (or
    // failed on it), and renewals had stopped, so nothing ever repaired it.
    for (let round = 0; round < 8; round++) {
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      await a.cluster.joinNetwork(VNI, CONFIG);
      const leaving = a.cluster.leaveNetwork(VNI);
      for (let turn = 0; turn < round; turn++) await new Promise((r) => setImmediate(r));
      await Promise.all([leaving, a.cluster.joinNetwork(4243, CONFIG)]);
      assert.deepEqual(
        await contents(kv, 4243),
        { config: STORED_CONFIG, "hosts/host-a": "192.0.2.1" },
        `round ${round}`,
      );
      assert.deepEqual(kv.leases, [await leaseOf(kv, a, 4243)], `round ${round}`);
      kv.advance(10);
      assert.equal(await a.cluster.renewLease(), true);
      kv.advance(10);
      assert.deepEqual(Object.keys(await contents(kv, 4243)), ["config", "hosts/host-a"]);
      a.cluster.stop();
    }
  });

  it("a join that fails as the only one drops the lease it took", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1");
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await b.cluster.joinNetwork(VNI, CONFIG);
    await assert.rejects(a.cluster.joinNetwork(VNI, { ...CONFIG, gateway: "10.60.0.254/24" }), {
      kind: "Conflict",
    });
    assert.deepEqual(kv.leases, [await leaseOf(kv, b)], "no lease of A's left to keep alive");
  });
});

describe("ClusterService: the last host", () => {
  it(
    "keeps the claims of a host that is down: only an empty network is cleared",
    TIMEOUT,
    async () => {
      // Regression: when the last registered host left, the whole network was deleted,
      // including the blocks and statics of a host whose lease had lapsed; its running
      // containers' addresses were then free for anyone.
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      const b = makeHost(kv, "host-b", "192.0.2.2");
      await joinAll([a, b]);
      await a.cluster.claimBlock(VNI, SUBNET, []);
      await a.cluster.claimAddress(VNI, "10.60.0.200");
      await b.cluster.claimBlock(VNI, SUBNET, []);
      kv.expireLease(await leaseOf(kv, a)); // A is down

      await b.cluster.leaveNetwork(VNI);
      assert.deepEqual(await contents(kv), {
        config: STORED_CONFIG,
        "addresses/10.60.0.200": "host-a",
        "blocks/10.60.0.0_26": "host-a",
      });
      // Nobody else can take A's block or its static meanwhile.
      const c = makeHost(kv, "host-c", "192.0.2.3");
      await joinAll([c]);
      assert.equal(await c.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.64/26");
      await assert.rejects(c.cluster.claimAddress(VNI, "10.60.0.200"), { kind: "Conflict" });
      // A comes back and leaves cleanly: with C gone too, the network is cleared.
      await c.cluster.leaveNetwork(VNI);
      await a.cluster.leaveNetwork(VNI);
      assert.deepEqual(await kv.range(""), []);
    },
  );

  it("a host joining while the last one leaves is never left without config", TIMEOUT, async () => {
    // Regression: the leaver saw no hosts and deleted the network's prefix between the
    // joiner's check of the config and its registration: the joiner was registered in a
    // network without config, and the next host could record another subnet.
    for (let round = 0; round < 10; round++) {
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      const b = makeHost(kv, "host-b", "192.0.2.2");
      await a.cluster.joinNetwork(VNI, CONFIG);
      for (let turn = 0; turn < round; turn++) await new Promise((r) => setImmediate(r));
      await Promise.all([a.cluster.leaveNetwork(VNI), b.cluster.joinNetwork(VNI, CONFIG)]);
      assert.deepEqual(
        await contents(kv),
        {
          config: STORED_CONFIG,
          "hosts/host-b": "192.0.2.2",
        },
        `round ${round}`,
      );
      a.cluster.stop();
      b.cluster.stop();
    }
  });

  it(
    "a network created here again gives back what a failed leave left behind",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const a = makeHost(kv, "host-a", "192.0.2.1");
      const b = makeHost(kv, "host-b", "192.0.2.2");
      await joinAll([a, b]);
      await a.cluster.claimBlock(VNI, SUBNET, []);
      await a.cluster.claimAddress(VNI, "10.60.0.100");
      kv.unavailable = true;
      await assert.rejects(a.cluster.leaveNetwork(VNI));
      kv.unavailable = false;

      await a.cluster.joinNetwork(VNI, CONFIG, { fresh: true });
      assert.deepEqual(await claims(kv), {});
    },
  );
});

describe("ClusterService: a host returns", () => {
  it("re-claims its blocks and statics from its own state after a restart", TIMEOUT, async () => {
    const kv = new MemoryKeyValueStore();
    const local: LocalClaims = new Map([
      [VNI, { blocks: ["10.60.0.0/26"], statics: ["10.60.0.200"] }],
    ]);
    const a = makeHost(kv, "host-a", "192.0.2.1", 26, { local });
    await a.cluster.joinNetwork(VNI, CONFIG);
    // etcd lost A's claims (restored from an old backup, say) while A was away.
    await kv.deletePrefix(`${ROOT}/${VNI}/blocks/`);
    await kv.deletePrefix(`${ROOT}/${VNI}/addresses/`);
    a.cluster.stop();

    const again = makeHost(kv, "host-a", "192.0.2.1", 26, { local });
    again.cluster.resume([{ vni: VNI, config: CONFIG }]);
    await eventually(async () =>
      assert.deepEqual(await claims(kv), {
        "addresses/10.60.0.200": "host-a",
        "blocks/10.60.0.0_26": "host-a",
      }),
    );
    assert.deepEqual(again.cluster.conflictedBlocks(VNI), []);
  });

  it(
    "a block another host took meanwhile is a conflict: no new addresses from it",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const local: LocalClaims = new Map([
        [VNI, { blocks: ["10.60.0.0/26", "10.60.0.64/26"], statics: [] }],
      ]);
      const a = makeHost(kv, "host-a", "192.0.2.1", 26, { local });
      const b = makeHost(kv, "host-b", "192.0.2.2");
      await joinAll([a, b]);
      await kv.deletePrefix(`${ROOT}/${VNI}/blocks/`);
      assert.equal(await b.cluster.claimBlock(VNI, SUBNET, []), "10.60.0.0/26");

      kv.expireLease(await leaseOf(kv, a));
      assert.equal(await a.cluster.renewLease(), true);
      assert.deepEqual(a.cluster.conflictedBlocks(VNI), ["10.60.0.0/26"]);
      assert.deepEqual(await claims(kv), {
        "blocks/10.60.0.0_26": "host-b",
        "blocks/10.60.0.64_26": "host-a",
      });
    },
  );

  it(
    "a lapsed registration comes back in full: lease, host key, blocks, statics",
    TIMEOUT,
    async () => {
      const kv = new MemoryKeyValueStore();
      const local: LocalClaims = new Map([
        [VNI, { blocks: ["10.60.0.64/26"], statics: ["10.60.0.5"] }],
      ]);
      const a = makeHost(kv, "host-a", "192.0.2.1", 26, { local });
      await a.cluster.joinNetwork(VNI, CONFIG);
      const lost = await leaseOf(kv, a);
      await kv.deletePrefix(`${ROOT}/${VNI}/blocks/`);
      await kv.deletePrefix(`${ROOT}/${VNI}/addresses/`);
      kv.expireLease(lost);

      assert.equal(await a.cluster.renewLease(), true);
      assert.notEqual(await leaseOf(kv, a), lost);
      assert.deepEqual(await contents(kv), {
        config: STORED_CONFIG,
        "addresses/10.60.0.5": "host-a",
        "blocks/10.60.0.64_26": "host-a",
        "hosts/host-a": "192.0.2.1",
      });
    },
  );
});

describe("ClusterService: renewal and watch keep going", () => {
  it("renewal waits a third of the TTL, then backs off from 250 ms to 10 s", TIMEOUT, () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 6, 7, 100].map(renewalDelay),
      [5_000, 250, 500, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000],
    );
  });

  it("renewal retries on its own until etcd answers, then re-registers", TIMEOUT, async () => {
    // Regression: renewal ran every 5 s whatever happened, so a short outage could outlast
    // the lease between two attempts, and nothing retried sooner.
    const kv = new MemoryKeyValueStore();
    let attempts = 0;
    const keepAlive = kv.keepAlive.bind(kv);
    kv.keepAlive = (lease: string) => {
      attempts += 1;
      return keepAlive(lease);
    };
    const a = makeHost(kv, "host-a", "192.0.2.1", 26, {
      renewalDelay: (failures) => (failures === 0 ? 30 : 5),
    });
    await a.cluster.joinNetwork(VNI, CONFIG);
    kv.unavailable = true;
    await eventually(() => assert.ok(attempts >= 1));
    const failedFrom = attempts;
    await sleep(150);
    assert.ok(attempts - failedFrom >= 5, `kept retrying (${attempts - failedFrom} attempts)`);
    kv.advance(20); // the lease ran out while etcd was away
    kv.unavailable = false;
    await eventually(async () => assert.equal((await contents(kv))["hosts/host-a"], "192.0.2.1"));
  });

  it("a watch that goes silent is noticed, and the peers are listed again", TIMEOUT, async () => {
    // Regression: a partition that kept the watch's connection open (no reset) froze the
    // peer list forever: hosts that joined later never got traffic from this one.
    const kv = new MemoryKeyValueStore();
    const a = makeHost(kv, "host-a", "192.0.2.1", 26, { watchIdleMs: 100 });
    const b = makeHost(kv, "host-b", "192.0.2.2");
    await a.cluster.joinNetwork(VNI, CONFIG);
    await eventually(() => assert.deepEqual(a.peers.get(VNI), []));
    kv.stallWatches();
    await b.cluster.joinNetwork(VNI, CONFIG);
    await eventually(() => assert.deepEqual(a.peers.get(VNI), ["192.0.2.2"]));
  });
});

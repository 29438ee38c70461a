import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VethSpec } from "../../src/datapath/datapath.ts";
import { buildTestApp } from "../support/fakes.ts";

const NET_A = "a".repeat(64);
const NET_B = "b".repeat(64);

async function twoNetworks() {
  const t = await buildTestApp();
  for (const [id, pool] of [
    [NET_A, "10.15.1.0/24"],
    [NET_B, "10.15.2.0/24"],
  ] as const) {
    await t.call("/IpamDriver.RequestPool", { Pool: pool });
    await t.call("/NetworkDriver.CreateNetwork", {
      NetworkID: id,
      IPv4Data: [{ Pool: pool, Gateway: pool.replace("0/24", "1/24") }],
    });
  }
  return t;
}

const endpoint = (network: string, id: string, address: string) => ({
  NetworkID: network,
  EndpointID: id.repeat(64).slice(0, 64),
  Interface: { Address: address },
});

describe("driver concurrency", () => {
  it("requests for different networks run side by side", { timeout: 5_000 }, async () => {
    const t = await twoNetworks();
    const started = new Set<string>();
    let bothStarted: () => void = () => undefined;
    const rendezvous = new Promise<void>((resolve) => {
      bothStarted = resolve;
    });
    const original = t.datapath.ensureVeth.bind(t.datapath);
    t.datapath.ensureVeth = async (spec: VethSpec) => {
      started.add(spec.hostName);
      if (started.size === 2) bothStarted();
      // Each waits until the other network's request is in its host work too: this only
      // finishes if the two run at the same time.
      await rendezvous;
      return original(spec);
    };
    const [a, b] = await Promise.all([
      t.call("/NetworkDriver.CreateEndpoint", endpoint(NET_A, "1", "10.15.1.2/24")),
      t.call("/NetworkDriver.CreateEndpoint", endpoint(NET_B, "2", "10.15.2.2/24")),
    ]);
    assert.equal(a.status, 200);
    assert.equal(b.status, 200);
  });

  it("requests for one network run one at a time", async () => {
    const t = await twoNetworks();
    let inside = 0;
    let most = 0;
    const original = t.datapath.ensureVeth.bind(t.datapath);
    t.datapath.ensureVeth = async (spec: VethSpec) => {
      inside += 1;
      most = Math.max(most, inside);
      await new Promise((resolve) => setImmediate(resolve));
      inside -= 1;
      return original(spec);
    };
    const results = await Promise.all(
      ["1", "2", "3", "4"].map((id, index) =>
        t.call("/NetworkDriver.CreateEndpoint", endpoint(NET_A, id, `10.15.1.${index + 2}/24`)),
      ),
    );
    assert.deepEqual(
      results.map((result) => result.status),
      [200, 200, 200, 200],
    );
    assert.equal(most, 1);
    assert.equal(Object.keys(t.state.document.endpoints).length, 4);
  });

  it("a failed save removes the veth it made", async () => {
    const t = await twoNetworks();
    t.store.failNextSave = true;
    const failed = await t.call(
      "/NetworkDriver.CreateEndpoint",
      endpoint(NET_A, "1", "10.15.1.2/24"),
    );
    assert.equal(failed.status, 500);
    assert.equal(t.datapath.hostLinks.has("vsy11111111111"), false);
    assert.deepEqual(t.state.document.endpoints, {});
  });
});

describe("host work stays out of the state queue", () => {
  it("a network whose bridge creation hangs does not hold up another network's requests or the IPAM", {
    timeout: 5_000,
  }, async () => {
    const t = await twoNetworks();
    let release: () => void = () => undefined;
    const hung = new Promise<void>((resolve) => {
      release = resolve;
    });
    const original = t.datapath.ensureBridge.bind(t.datapath);
    t.datapath.ensureBridge = async (spec) => {
      if (spec.name === `sy-${"c".repeat(12)}`) await hung;
      return original(spec);
    };
    await t.call("/IpamDriver.RequestPool", { Pool: "10.15.3.0/24" });
    const slow = t.call("/NetworkDriver.CreateNetwork", {
      NetworkID: "c".repeat(64),
      IPv4Data: [{ Pool: "10.15.3.0/24", Gateway: "10.15.3.1/24" }],
    });
    // While network c's host work hangs, network a, the IPAM and DeleteEndpoint still answer.
    const created = await t.call(
      "/NetworkDriver.CreateEndpoint",
      endpoint(NET_A, "1", "10.15.1.2/24"),
    );
    assert.equal(created.status, 200);
    const pool = await t.call("/IpamDriver.RequestPool", { Pool: "10.15.4.0/24" });
    assert.equal(pool.status, 200);
    const deleted = await t.call("/NetworkDriver.DeleteEndpoint", {
      NetworkID: NET_A,
      EndpointID: "1".repeat(64),
    });
    assert.equal(deleted.status, 200);
    release();
    assert.equal((await slow).status, 200);
  });

  it("a state change that is not synchronous is refused", { timeout: 5_000 }, async () => {
    const t = await twoNetworks();
    await assert.rejects(
      t.state.commit(
        // biome-ignore lint/suspicious/noExplicitAny: the point is to break the type on purpose
        (async () => undefined) as any,
      ),
      /must be synchronous/,
    );
  });
});

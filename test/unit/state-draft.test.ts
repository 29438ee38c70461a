import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { defaultIpamSettings, Ipam } from "../../src/ipam/ipam.ts";
import { BatchLog, Draft } from "../../src/state/draft.ts";
import { type EndpointRecord, emptyState, type StateDocument } from "../../src/state/model.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { MemoryStore } from "../support/memory-store.ts";

function endpoint(id: string, networkId = "n1"): EndpointRecord {
  return {
    id,
    networkId,
    hostVeth: `vsy${id}`,
    peerVeth: `csy${id}`,
    mac: "02:42:0a:01:00:02",
    address: "10.1.0.2/24",
    ports: [],
  };
}

function documentWith(...ids: string[]): StateDocument {
  const document = emptyState();
  for (const id of ids) document.endpoints[id] = endpoint(id);
  return document;
}

describe("Draft (copy-on-write view of the state)", () => {
  it("a write inside a record replaces that record with a copy; the original is untouched", () => {
    const document = documentWith("a", "b");
    const original = document.endpoints.a;
    const draft = new Draft(document);
    draft.view.endpoints.a?.ports.push({
      proto: "tcp",
      containerPort: 80,
      hostIp: "",
      hostPort: 8080,
      hostPortEnd: 8080,
    });
    assert.equal(original?.ports.length, 0);
    assert.equal(document.endpoints.a?.ports.length, 1);
    assert.notEqual(document.endpoints.a, original);
    assert.deepEqual(
      draft.originals.map((item) => item.path),
      [["endpoints", "a"]],
    );
  });

  it("reading, enumerating and filtering copy nothing and touch nothing", () => {
    const document = documentWith("a", "b", "c");
    const before = { ...document.endpoints };
    const draft = new Draft(document);
    const found = Object.values(draft.view.endpoints).filter((item) => item.id !== "b");
    assert.equal(found.length, 2);
    assert.equal(JSON.stringify(draft.view), JSON.stringify(document));
    assert.deepEqual(draft.originals, []);
    for (const id of ["a", "b", "c"]) assert.equal(document.endpoints[id], before[id]);
  });

  it("rollback puts back the very objects the document held, in order of nesting", () => {
    const document = documentWith("a");
    document.cluster = { hostId: "h", networks: {} };
    const original = document.endpoints.a;
    const cluster = document.cluster;
    const draft = new Draft(document);
    const view = draft.view;
    if (view.endpoints.a !== undefined) view.endpoints.a.mac = "02:00:00:00:00:09";
    delete view.endpoints.a;
    view.endpoints.z = endpoint("z");
    view.cluster = { hostId: "other", networks: {} };
    if (view.cluster !== undefined)
      view.cluster.networks["7"] = {
        vni: 7,
        networkId: "n",
        subnet: "10.7.0.0/16",
        gateway: "10.7.0.1/16",
        blocks: [],
        peers: [],
      };
    draft.rollback();
    assert.equal(document.endpoints.a, original);
    assert.equal(document.endpoints.z, undefined);
    assert.equal(document.cluster, cluster);
    assert.deepEqual(document.cluster?.networks, {});
  });

  it("views stored into the document become plain copies, not proxies", () => {
    const document = documentWith("a");
    const draft = new Draft(document);
    const view = draft.view;
    view.endpoints.copy = { ...(view.endpoints.a as EndpointRecord), id: "copy" };
    draft.close();
    // structuredClone throws on a proxy: the stored value must be plain data all the way down.
    assert.doesNotThrow(() => structuredClone(document));
  });

  it("a write through a view after its change returned throws", () => {
    const draft = new Draft(documentWith("a"));
    const kept = draft.view.endpoints.a as EndpointRecord;
    draft.close();
    assert.throws(() => {
      kept.mac = "02:00:00:00:00:01";
    }, /after it returned/);
  });

  it("BatchLog reports only records whose value changed", () => {
    const document = documentWith("a", "b");
    const log = new BatchLog();
    const draft = new Draft(document);
    const view = draft.view;
    if (view.endpoints.a !== undefined) view.endpoints.a.mac = "02:42:0a:01:00:02"; // same value
    if (view.endpoints.b !== undefined) view.endpoints.b.mac = "02:00:00:00:00:0b";
    view.endpoints.c = endpoint("c");
    log.absorb(draft);
    assert.deepEqual(
      log.changes(document).map((change) => change.path),
      [
        ["endpoints", "b"],
        ["endpoints", "c"],
      ],
    );
  });
});

describe("StateManager with copy-on-write changes", () => {
  it("a committed record keeps its identity when a later change only reads it", async () => {
    const state = await StateManager.open(new MemoryStore(), defaultIpamSettings());
    await state.commit((document) => {
      document.endpoints.a = endpoint("a");
    });
    const record = state.document.endpoints.a;
    await state.commit((document) => {
      if (document.endpoints.a?.networkId !== "n1") throw new Error("not seen");
      document.endpoints.b = endpoint("b");
    });
    assert.equal(state.document.endpoints.a, record);
  });

  it("a change that wrote past its view is caught by the memory store's check", async () => {
    const store = new MemoryStore();
    const state = await StateManager.open(store, defaultIpamSettings());
    await state.commit((document) => {
      document.endpoints.a = endpoint("a");
    });
    // The bug this guards against: a record changed in place, outside the draft.
    await assert.rejects(
      state.commit((document) => {
        document.endpoints.b = endpoint("b");
        (state.document.endpoints.a as EndpointRecord).mac = "02:00:00:00:00:0f";
      }),
      /do not add up/,
    );
  });

  it("preview shows changes in flight and takes them out again, objects and all", async () => {
    const state = await StateManager.open(new MemoryStore(), defaultIpamSettings());
    await state.commit((document) => {
      document.endpoints.a = endpoint("a");
    });
    const record = state.document.endpoints.a;
    const seen = state.preview(
      [
        (document) => {
          delete document.endpoints.a;
        },
        (document) => {
          document.endpoints.b = endpoint("b");
        },
        () => {
          throw new Error("no longer fits");
        },
      ],
      (document) => Object.keys(document.endpoints),
    );
    assert.deepEqual(seen, ["b"]);
    assert.deepEqual(Object.keys(state.document.endpoints), ["a"]);
    assert.equal(state.document.endpoints.a, record);
  });
});

describe("Ipam undo log", () => {
  const POOL = { addressSpace: "LocalDefault", pool: "10.1.0.0/24", v6: false };

  it("rollbackTo undoes addresses, cursor, pools and their order; changedPools names only the touched", () => {
    const ipam = new Ipam(defaultIpamSettings());
    const first = ipam.requestPool(POOL);
    const second = ipam.requestPool({ ...POOL, pool: "10.2.0.0/24" });
    ipam.requestAddress(first.poolId, {});
    ipam.settle();
    const before = JSON.stringify(ipam.snapshot());
    const mark = ipam.savepoint();
    ipam.requestAddress(first.poolId, {});
    ipam.releaseAddress(first.poolId, "10.1.0.1");
    ipam.releasePool(first.poolId);
    ipam.requestPool({ ...POOL, pool: "10.3.0.0/24" });
    assert.deepEqual(ipam.changedPools().sort(), [first.poolId, "LocalDefault/10.3.0.0/24"]);
    ipam.rollbackTo(mark);
    assert.equal(JSON.stringify(ipam.snapshot()), before);
    assert.deepEqual(
      ipam.pools().map((pool) => pool.poolId),
      [first.poolId, second.poolId],
    );
    // The cursor went back too: the next automatic address is the one after the first.
    assert.equal(ipam.requestAddress(first.poolId, {}), "10.1.0.2/24");
  });
});

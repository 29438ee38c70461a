import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { NameTable } from "../../src/discovery/name-table.ts";
import {
  answerQuestion,
  indexClientNetworks,
  memoiseClientNetworks,
  networksOfClient,
} from "../../src/discovery/resolver.ts";
import { RecordType } from "../../src/dns/message.ts";
import { type EndpointRecord, emptyState, type StateDocument } from "../../src/state/model.ts";
import { networkRecord } from "../support/records.ts";

/**
 * What the resolver of names across hosts answers, beyond the A and PTR records the
 * names-across-hosts tests cover: REFUSED for everything it does not serve (so the client asks
 * its next server at once), NODATA for other types of a name it does know (as an
 * authoritative server answers, so the client does not ask upstream about one of ours).
 */
const TIMEOUT = { timeout: 10_000 };
const TXT = 16;
const MX = 15;
const CLASS_CH = 3;
const CLASS_ANY = 255;

const table = new NameTable();
table.replace(4242, [
  { hostId: "h2", endpointId: "e1", names: ["web1", "web"], ipv4: "10.60.0.5" },
]);
const ask = (name: string, type: number, klass = 1, vnis = [4242]) =>
  answerQuestion({ name, type, class: klass }, vnis, table);
const NODATA = { rcode: "NOERROR", authoritative: true, records: [] };

describe("the resolver's refusals and empty answers", TIMEOUT, () => {
  // Regression: a PTR (or any non-A type asked as a PTR) of a known forward name was REFUSED,
  // so Docker asked the upstream server about a name only this host knows.
  it("answers NODATA to other types of a known name, PTR included", TIMEOUT, () => {
    for (const type of [RecordType.AAAA, RecordType.PTR, TXT, MX, RecordType.OPT]) {
      assert.deepEqual(ask("web1", type), NODATA, `type ${type}`);
    }
  });

  // Regression: a known reverse name asked for another type than PTR was REFUSED.
  it("answers NODATA to other types of a known reverse name, PTR to ANY", TIMEOUT, () => {
    for (const type of [RecordType.A, RecordType.AAAA, TXT]) {
      assert.deepEqual(ask("5.0.60.10.in-addr.arpa", type), NODATA, `type ${type}`);
    }
    assert.deepEqual(ask("5.0.60.10.in-addr.arpa", RecordType.ANY).records, [
      { type: "PTR", target: "web1", ttl: 1 },
    ]);
    assert.deepEqual(ask("5.0.60.10.IN-ADDR.ARPA", RecordType.PTR).records, [
      { type: "PTR", target: "web1", ttl: 1 },
    ]);
  });

  it("refuses zone transfers even of a known name: it holds no zone", TIMEOUT, () => {
    assert.equal(ask("web1", RecordType.AXFR).rcode, "REFUSED");
    assert.equal(ask("web1", RecordType.IXFR).rcode, "REFUSED");
  });

  it("refuses unknown names, other classes, and clients it does not serve", TIMEOUT, () => {
    for (const type of [RecordType.A, RecordType.AAAA, RecordType.PTR, TXT, RecordType.ANY]) {
      assert.deepEqual(ask("nobody", type), { rcode: "REFUSED" }, `type ${type}`);
      assert.deepEqual(ask("9.0.60.10.in-addr.arpa", type), { rcode: "REFUSED" }, `type ${type}`);
      assert.deepEqual(ask("web1", type, CLASS_CH), { rcode: "REFUSED" }, `CH type ${type}`);
      assert.deepEqual(ask("web1", type, CLASS_ANY), { rcode: "REFUSED" }, `ANY type ${type}`);
      assert.deepEqual(ask("web1", type, 1, []), { rcode: "REFUSED" }, `no network ${type}`);
    }
    // Names under, above and beside a known one are other names.
    for (const name of ["x.web1", "web1.mesh", "", "in-addr.arpa", "0.60.10.in-addr.arpa"]) {
      assert.deepEqual(ask(name, RecordType.A), { rcode: "REFUSED" }, name);
    }
  });
});

function endpoint(
  id: string,
  networkId: string,
  address: string | undefined,
  sandbox?: string,
): EndpointRecord {
  return {
    id,
    networkId,
    hostVeth: `v${id}`,
    peerVeth: "eth0",
    mac: "02:42:00:00:00:00",
    ...(address === undefined ? {} : { address: `${address}/24` }),
    ports: [],
    ...(sandbox === undefined ? {} : { sandbox }),
  };
}

/** A host's state: multi-host networks 4200..4202, a single-host one, and its endpoints. */
function hostState(
  endpoints: readonly [network: number, address?: number, sandbox?: number][],
): StateDocument {
  const state = emptyState();
  for (let n = 0; n < 4; n++) {
    state.networks[`n${n}`] = networkRecord(`n${n}`, `sy-${n}`, `10.6${n}.0.0/24`, {
      ...(n < 3 ? { vxlanId: 4200 + n } : {}),
    });
  }
  endpoints.forEach(([network, address, sandbox], i) => {
    state.endpoints[`e${i}`] = endpoint(
      `e${i}`,
      `n${network}`,
      address === undefined ? undefined : `10.60.0.${address}`,
      sandbox === undefined ? undefined : `/var/run/docker/netns/${sandbox}`,
    );
  });
  return state;
}

describe("which networks a client resolves", TIMEOUT, () => {
  it("the index answers every client as networksOfClient does", TIMEOUT, () => {
    // Few addresses and sandboxes, so that endpoints share them.
    const endpointArb = fc.tuple(
      fc.nat(3),
      fc.option(fc.nat(5), { nil: undefined }),
      fc.option(fc.nat(3), { nil: undefined }),
    );
    fc.assert(
      fc.property(fc.array(endpointArb, { maxLength: 25 }), (endpoints) => {
        const state = hostState(endpoints);
        const index = indexClientNetworks(state);
        for (let address = 0; address <= 6; address++) {
          const client = `10.60.0.${address}`;
          assert.deepEqual(index.get(client) ?? [], networksOfClient(state, client), client);
        }
      }),
      { numRuns: 500, seed: 53 },
    );
  });

  // Regression: every query scanned every endpoint of the host (twice for a container with a
  // sandbox), on the event loop that answers dockerd: a flood of queries cost O(endpoints) each.
  it("a query reads no endpoint once the index of the state is built", TIMEOUT, () => {
    const state = hostState(
      Array.from({ length: 2_000 }, (_, i) => [i % 3, i % 250, i] as [number, number, number]),
    );
    let reads = 0;
    const counted = new Proxy(state.endpoints, {
      get: (target, key) => {
        reads += 1;
        return Reflect.get(target, key);
      },
      ownKeys: (target) => {
        reads += 1;
        return Reflect.ownKeys(target);
      },
    });
    const document: StateDocument = { ...state, endpoints: counted };
    let revision = 1;
    const networksOf = memoiseClientNetworks(
      () => document,
      () => revision,
    );
    assert.deepEqual(networksOf("10.60.0.7"), [4201]);
    const afterBuild = reads;
    for (let i = 0; i < 1_000; i++) networksOf(`10.60.0.${i % 256}`);
    assert.equal(reads, afterBuild, "no endpoint read after the index was built");

    // A change (the state manager changes records in place): the next query sees it.
    state.endpoints.e7 = endpoint("e7", "n2", "10.60.0.7", "/var/run/docker/netns/7");
    assert.deepEqual(networksOf("10.60.0.7"), [4201], "the same revision: the same index");
    revision += 1;
    assert.deepEqual(networksOf("10.60.0.7"), [4202]);
    assert.deepEqual(networksOf("172.17.0.2"), []);
  });
});

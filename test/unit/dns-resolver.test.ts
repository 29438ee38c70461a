import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NameTable } from "../../src/discovery/name-table.ts";
import { answerQuestion } from "../../src/discovery/resolver.ts";
import { RecordType } from "../../src/dns/message.ts";

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

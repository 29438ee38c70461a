import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  addressFromReverseName,
  buildResponse,
  type DnsQuery,
  type DnsRecord,
  parseQuery,
  RecordClass,
  RecordType,
  reverseName,
} from "../../src/dns/message.ts";

const TIMEOUT = { timeout: 10_000 };

/** The fields of a hand-built query; anything left out is a plain recursive A query. */
interface QuerySpec {
  id?: number;
  flags?: number;
  counts?: [qd: number, an: number, ns: number, ar: number];
  /** The question section bytes; by default `web1` A IN. */
  question?: number[];
  /** Bytes after the question (additional records). */
  tail?: number[];
}

/** Wire bytes of a name given as labels, uncompressed. */
function nameBytes(...labels: string[]): number[] {
  const bytes: number[] = [];
  for (const label of labels) bytes.push(label.length, ...Buffer.from(label, "latin1"));
  bytes.push(0);
  return bytes;
}

const u16 = (value: number): number[] => [value >> 8, value & 0xff];

function questionBytes(labels: string[], type: number = RecordType.A): number[] {
  return [...nameBytes(...labels), ...u16(type), ...u16(RecordClass.IN)];
}

/** An EDNS OPT record advertising `size` bytes. */
const optRecord = (size: number): number[] => [0, ...u16(41), ...u16(size), 0, 0, 0, 0, 0, 0];

function queryBytes(spec: QuerySpec = {}): Uint8Array {
  const [qd, an, ns, ar] = spec.counts ?? [1, 0, 0, spec.tail === undefined ? 0 : 1];
  return Uint8Array.from([
    ...u16(spec.id ?? 0x1234),
    ...u16(spec.flags ?? 0x0100),
    ...u16(qd),
    ...u16(an),
    ...u16(ns),
    ...u16(ar),
    ...(spec.question ?? questionBytes(["web1"])),
    ...(spec.tail ?? []),
  ]);
}

function parsed(packet: Uint8Array): DnsQuery {
  const result = parseQuery(packet);
  assert.ok(result.ok, `expected a valid query, got ${JSON.stringify(result)}`);
  return result.query;
}

/** A reply decoded independently of the code under test, only as far as these tests need. */
interface DecodedReply {
  id: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  rcode: number;
  counts: number[];
  question: Uint8Array;
  answers: { owner: number; type: number; class: number; ttl: number; data: Uint8Array }[];
}

function decodeReply(bytes: Uint8Array, questionLength: number): DecodedReply {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const flags = view.getUint16(2);
  const counts = [4, 6, 8, 10].map((at) => view.getUint16(at));
  let at = 12 + questionLength;
  const answers: DecodedReply["answers"] = [];
  for (let i = 0; i < (counts[1] ?? 0); i++) {
    const length = view.getUint16(at + 10);
    answers.push({
      owner: view.getUint16(at),
      type: view.getUint16(at + 2),
      class: view.getUint16(at + 4),
      ttl: view.getUint32(at + 6),
      data: bytes.slice(at + 12, at + 12 + length),
    });
    at += 12 + length;
  }
  return {
    id: view.getUint16(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    rcode: flags & 0xf,
    counts,
    question: bytes.slice(12, 12 + questionLength),
    answers,
  };
}

/** Mulberry32: a small seeded PRNG, so a fuzz failure can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("parseQuery", TIMEOUT, () => {
  it("reads a hand-built query for Web1. as web1, echoing the question as sent", TIMEOUT, () => {
    const question = questionBytes(["Web1"], RecordType.AAAA);
    const query = parsed(queryBytes({ id: 0xbeef, question }));
    assert.deepEqual(query.question, { name: "web1", type: RecordType.AAAA, class: 1 });
    assert.equal(query.id, 0xbeef);
    assert.equal(query.recursionDesired, true);
    assert.equal(query.opcode, 0);
    assert.equal(query.hasEdns, false);
    assert.equal(query.udpPayloadSize, 512);
    assert.deepEqual([...query.rawQuestion], question);
  });

  it("joins labels with dots and reads the root name as empty", TIMEOUT, () => {
    const name = (labels: string[]) =>
      parsed(queryBytes({ question: questionBytes(labels) })).question.name;
    assert.equal(name(["Web1", "Overlay", "INTERNAL"]), "web1.overlay.internal");
    assert.equal(name([]), "");
    // Outside [a-z0-9_-] is still a name; the resolver decides what to do with it.
    assert.equal(name(["a*b", "C~d"]), "a*b.c~d");
  });

  it("notes EDNS and the payload size the client accepts", TIMEOUT, () => {
    const query = parsed(queryBytes({ tail: optRecord(4096) }));
    assert.equal(query.hasEdns, true);
    assert.equal(query.udpPayloadSize, 4096);
    // RFC 6891 §6.2.5: sizes below 512 are treated as 512.
    assert.equal(parsed(queryBytes({ tail: optRecord(100) })).udpPayloadSize, 512);
  });

  it("ignores a single additional record that is not OPT", TIMEOUT, () => {
    const query = parsed(queryBytes({ tail: [...nameBytes("x"), 0, 1, 0, 1, 0, 0, 0, 0, 0] }));
    assert.equal(query.hasEdns, false);
  });

  // Regression: FORMERR made Docker's embedded DNS (and glibc) give up on the lookup instead
  // of asking the next server of the `dns` setting.
  it("refuses, with its id, every query it does not serve whose header is whole", TIMEOUT, () => {
    const long = "a".repeat(63);
    const refusal = (packet: Uint8Array, questionEnd?: number) => ({
      id: 0x1234,
      opcode: 0,
      recursionDesired: true,
      ...(questionEnd === undefined ? {} : { rawQuestion: packet.slice(12, questionEnd) }),
    });
    // [what, packet, where the echoed question ends (none when its bounds cannot be read)]
    const cases: [what: string, packet: Uint8Array, questionEnd?: number][] = [
      [
        "two questions",
        queryBytes({
          counts: [2, 0, 0, 0],
          question: [...questionBytes(["a"]), ...questionBytes(["b"])],
        }),
      ],
      ["no question", queryBytes({ counts: [0, 0, 0, 0], question: [] })],
      ["a label past the end", queryBytes({ question: [5, 0x77, 0x65] })],
      ["no type and class", queryBytes({ question: nameBytes("web1") })],
      ["a class cut short", queryBytes({ question: [...nameBytes("web1"), 0, 1, 0] })],
      ["a name without its end", queryBytes({ question: [4, ...Buffer.from("web1")] })],
      ["a compression pointer", queryBytes({ question: [0xc0, 12, 0, 1, 0, 1] })],
      ["a pointer after a label", queryBytes({ question: [1, 0x61, 0xc0, 12, 0, 1, 0, 1] })],
      ["an extended label type", queryBytes({ question: [0x41, 0, 0, 1, 0, 1] })],
      ["a label of 64 bytes", queryBytes({ question: questionBytes(["a".repeat(64)]) })],
      [
        "a name of 256 bytes",
        queryBytes({ question: questionBytes([long, long, long, "a".repeat(62)]) }),
      ],
      [
        "a name of 321 bytes",
        queryBytes({ question: questionBytes([long, long, long, long, long]) }),
      ],
      ["a dot inside a label", queryBytes({ question: questionBytes(["we.b1"]) }), 23],
      ["a space inside a label", queryBytes({ question: questionBytes(["we b1"]) }), 23],
      ["a control byte inside a label", queryBytes({ question: questionBytes(["web\n1"]) }), 23],
      ["a byte above ASCII", queryBytes({ question: questionBytes(["w\u00e9b1"]) }), 23],
      ["ANCOUNT 1", queryBytes({ counts: [1, 1, 0, 0] }), 22],
      ["NSCOUNT 1", queryBytes({ counts: [1, 0, 1, 0] }), 22],
      [
        "ARCOUNT 2",
        queryBytes({ counts: [1, 0, 0, 2], tail: [...optRecord(1232), ...optRecord(1232)] }),
        22,
      ],
      ["an OPT record cut short", queryBytes({ tail: optRecord(1232).slice(0, 7) }), 22],
      ["OPT data past the end", queryBytes({ tail: [0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 9, 1] }), 22],
    ];
    for (const [what, packet, questionEnd] of cases) {
      const result = parseQuery(packet);
      assert.equal(result.ok, false, what);
      if (result.ok) continue;
      assert.deepEqual(result.refusal, refusal(packet, questionEnd), what);
      assert.ok(result.reason.length > 0, what);
      // The reply is REFUSED and never longer than what it answers: it amplifies nothing.
      const reply = buildResponse(result.refusal ?? { id: 0 }, { rcode: "REFUSED" });
      assert.equal((reply[3] ?? 0) & 0xf, 5, what);
      assert.ok(reply.length <= packet.length, what);
    }
  });

  it(
    "echoes the question, opcode and RD of a refused query with a readable question",
    TIMEOUT,
    () => {
      const packet = queryBytes({ question: questionBytes(["W\u00e9b1"], RecordType.AAAA) });
      const result = parseQuery(packet);
      assert.ok(!result.ok && result.refusal !== undefined);
      const reply = decodeReply(buildResponse(result.refusal, { rcode: "REFUSED" }), 10);
      assert.deepEqual(
        [reply.id, reply.qr, reply.opcode, reply.rd, reply.aa, reply.rcode],
        [0x1234, true, 0, true, false, 5],
      );
      assert.deepEqual(reply.counts, [1, 0, 0, 0]);
      assert.deepEqual([...reply.question], [...packet.slice(12)]);
    },
  );

  it("accepts a name of exactly 255 bytes", TIMEOUT, () => {
    const long = "a".repeat(63);
    const query = parsed(
      queryBytes({ question: questionBytes([long, long, long, "b".repeat(61)]) }),
    );
    assert.equal(query.question.name.length, 253);
  });

  it("drops a header cut short: there is no id to answer", TIMEOUT, () => {
    for (let length = 0; length < 12; length++) {
      const result = parseQuery(queryBytes().slice(0, length));
      assert.ok(!result.ok && result.refusal === undefined, `length ${length}`);
    }
  });

  it("serves no cut of a valid query and never reads past the end", TIMEOUT, () => {
    const whole = queryBytes({ tail: optRecord(1232) });
    for (let length = 12; length < whole.length; length++) {
      const result = parseQuery(whole.slice(0, length));
      assert.equal(result.ok, false, `cut at ${length}`);
      if (!result.ok) assert.equal(result.refusal?.id, 0x1234, `cut at ${length}`);
    }
  });

  it("drops a response (QR set) so two responders never bounce answers", TIMEOUT, () => {
    const result = parseQuery(queryBytes({ flags: 0x8100 }));
    assert.ok(!result.ok && result.refusal === undefined);
  });

  // Regression: NOTIMP ended the lookup in Docker's embedded DNS instead of moving on.
  it("refuses opcodes other than QUERY, echoing the opcode", TIMEOUT, () => {
    for (const opcode of [1, 2, 4, 5, 15]) {
      const packet = queryBytes({ flags: opcode << 11 });
      const result = parseQuery(packet);
      assert.ok(!result.ok, `opcode ${opcode}`);
      assert.deepEqual(result.refusal, {
        id: 0x1234,
        opcode,
        recursionDesired: false,
        rawQuestion: packet.slice(12),
      });
      const reply = decodeReply(buildResponse(result.refusal, { rcode: "REFUSED" }), 10);
      assert.deepEqual([reply.opcode, reply.rcode, reply.counts[0]], [opcode, 5, 1]);
    }
  });
});

describe("buildResponse", TIMEOUT, () => {
  const roundTrip = (type: number, records: DnsRecord[]) => {
    const query = parsed(queryBytes({ question: questionBytes(["Web1"], type) }));
    const reply = buildResponse(query, { rcode: "NOERROR", authoritative: true, records });
    return { query, reply: decodeReply(reply, query.rawQuestion.length), bytes: reply };
  };

  it("encodes A records behind a pointer to the echoed question", TIMEOUT, () => {
    const { query, reply, bytes } = roundTrip(RecordType.A, [
      { type: "A", address: "10.60.0.5", ttl: 30 },
      { type: "A", address: "10.60.0.6", ttl: 30 },
    ]);
    assert.equal(reply.id, query.id);
    assert.deepEqual(
      [reply.qr, reply.opcode, reply.aa, reply.tc, reply.rd, reply.ra, reply.rcode],
      [true, 0, true, false, true, false, 0],
    );
    assert.deepEqual(reply.counts, [1, 2, 0, 0]);
    assert.deepEqual(reply.question, query.rawQuestion);
    assert.deepEqual(
      reply.answers.map((a) => [a.owner, a.type, a.class, a.ttl, [...a.data]]),
      [
        [0xc00c, 1, 1, 30, [10, 60, 0, 5]],
        [0xc00c, 1, 1, 30, [10, 60, 0, 6]],
      ],
    );
    assert.equal(bytes.length, 12 + query.rawQuestion.length + 2 * 16);
  });

  it("encodes AAAA records as 16 bytes", TIMEOUT, () => {
    const { reply } = roundTrip(RecordType.AAAA, [{ type: "AAAA", address: "fd00::5", ttl: 60 }]);
    assert.equal(reply.answers.length, 1);
    assert.equal(reply.answers[0]?.type, 28);
    assert.deepEqual(
      [...(reply.answers[0]?.data ?? [])],
      [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
    );
  });

  it("encodes PTR targets as uncompressed names", TIMEOUT, () => {
    const { reply } = roundTrip(RecordType.PTR, [{ type: "PTR", target: "web1.overlay.", ttl: 5 }]);
    assert.equal(reply.answers[0]?.type, 12);
    assert.equal(reply.answers[0]?.ttl, 5);
    assert.deepEqual([...(reply.answers[0]?.data ?? [])], nameBytes("web1", "overlay"));
  });

  it("clamps TTLs to 0..2^31-1", TIMEOUT, () => {
    const { reply } = roundTrip(RecordType.A, [
      { type: "A", address: "10.0.0.1", ttl: -5 },
      { type: "A", address: "10.0.0.2", ttl: 2 ** 40 },
      { type: "A", address: "10.0.0.3", ttl: Number.NaN },
    ]);
    assert.deepEqual(
      reply.answers.map((a) => a.ttl),
      [0, 0x7fffffff, 0],
    );
  });

  it("refuses to encode an address of the wrong family or a bad PTR target", TIMEOUT, () => {
    const query = parsed(queryBytes());
    const build = (record: DnsRecord) => () =>
      buildResponse(query, { rcode: "NOERROR", records: [record] });
    assert.throws(build({ type: "A", address: "fd00::5", ttl: 1 }), /not an IPv4 address/);
    assert.throws(build({ type: "AAAA", address: "10.0.0.5", ttl: 1 }), /not an IPv6 address/);
    assert.throws(build({ type: "A", address: "web1", ttl: 1 }), /not an IPv4 address/);
    assert.throws(build({ type: "PTR", target: "a..b", ttl: 1 }), /bad label/);
    assert.throws(build({ type: "PTR", target: `${"a".repeat(64)}.b`, ttl: 1 }), /bad label/);
  });

  it("sets the rcode and copies RD; clears RD when the query did not ask", TIMEOUT, () => {
    const query = parsed(queryBytes({ flags: 0 }));
    const reply = decodeReply(buildResponse(query, { rcode: "REFUSED" }), query.rawQuestion.length);
    assert.deepEqual([reply.qr, reply.rd, reply.aa, reply.rcode], [true, false, false, 5]);
    assert.deepEqual(reply.counts, [1, 0, 0, 0]);
    const codes = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
    for (const [rcode, value] of Object.entries(codes)) {
      const bytes = buildResponse(query, { rcode: rcode as keyof typeof codes });
      assert.equal(decodeReply(bytes, 0).rcode, value, rcode);
    }
  });

  it("answers a bare id with a header only", TIMEOUT, () => {
    const bytes = buildResponse({ id: 0x4321 }, { rcode: "REFUSED" });
    assert.deepEqual([...bytes], [0x43, 0x21, 0x80, 0x05, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("leaves out records that do not fit in maxBytes and sets TC", TIMEOUT, () => {
    const query = parsed(queryBytes());
    const records: DnsRecord[] = Array.from({ length: 40 }, (_, i) => ({
      type: "A",
      address: `10.0.0.${i}`,
      ttl: 1,
    }));
    const bytes = buildResponse(query, { rcode: "NOERROR", records }, { maxBytes: 512 });
    const reply = decodeReply(bytes, query.rawQuestion.length);
    const fit = Math.floor((512 - 12 - query.rawQuestion.length) / 16);
    assert.ok(bytes.length <= 512);
    assert.equal(reply.tc, true);
    assert.equal(reply.counts[1], fit);
    assert.equal(reply.answers.length, fit);
    assert.deepEqual([...(reply.answers[fit - 1]?.data ?? [])], [10, 0, 0, fit - 1]);

    const few = buildResponse(
      query,
      { rcode: "NOERROR", records: records.slice(0, 3) },
      { maxBytes: 512 },
    );
    assert.equal(decodeReply(few, query.rawQuestion.length).tc, false);
  });

  it("answers an EDNS query with an OPT record, counted within maxBytes", TIMEOUT, () => {
    const query = parsed(queryBytes({ tail: optRecord(4096) }));
    const records: DnsRecord[] = Array.from({ length: 40 }, () => ({
      type: "A",
      address: "10.0.0.1",
      ttl: 1,
    }));
    const bytes = buildResponse(query, { rcode: "NOERROR", records }, { maxBytes: 512 });
    const reply = decodeReply(bytes, query.rawQuestion.length);
    assert.ok(bytes.length <= 512);
    assert.equal(reply.counts[3], 1);
    assert.deepEqual([...bytes.slice(-11)], [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    assert.equal(reply.counts[1], Math.floor((512 - 12 - query.rawQuestion.length - 11) / 16));
  });
});

describe("parseQuery fuzzing", TIMEOUT, () => {
  /** Checks what must hold for any input: no throw, and a valid result stays inside the packet. */
  function check(packet: Uint8Array): void {
    const result = parseQuery(packet);
    if (!result.ok) {
      // A refusal is never longer than what it answers, and never answers a response.
      if (result.refusal === undefined) return;
      assert.ok(buildResponse(result.refusal, { rcode: "REFUSED" }).length <= packet.length);
      assert.equal((packet[2] ?? 0) & 0x80, 0);
      return;
    }
    const { query } = result;
    assert.ok(12 + query.rawQuestion.length <= packet.length);
    assert.ok(query.question.name.length <= 253);
    assert.match(
      query.question.name,
      /^(|[\x21-\x2d\x2f-\x40\x5b-\x7e]+(\.[\x21-\x2d\x2f-\x40\x5b-\x7e]+)*)$/,
    );
    assert.ok(buildResponse(query, { rcode: "NOERROR" }, { maxBytes: 512 }).length <= 512);
  }

  it("never throws on random bytes", TIMEOUT, () => {
    const random = prng(0x5eed);
    for (let i = 0; i < 3000; i++) {
      const packet = new Uint8Array(Math.floor(random() * 300));
      for (let j = 0; j < packet.length; j++) packet[j] = Math.floor(random() * 256);
      // Mostly plausible headers, or almost everything fails on the first checks.
      if (packet.length >= 12 && random() < 0.7)
        packet.set([0, 0x01, 0, 1, 0, 0, 0, 0, 0, random() < 0.5 ? 1 : 0], 2);
      check(packet);
    }
  });

  it("never throws on mutations of a valid query", TIMEOUT, () => {
    const random = prng(1035);
    const valid = queryBytes({
      question: questionBytes(["web1", "overlay"]),
      tail: optRecord(1232),
    });
    let stillValid = 0;
    for (let i = 0; i < 5000; i++) {
      let packet = valid.slice();
      const mutations = 1 + Math.floor(random() * 4);
      for (let m = 0; m < mutations; m++) {
        const at = Math.floor(random() * packet.length);
        const choice = random();
        if (choice < 0.5) packet[at] = Math.floor(random() * 256);
        else if (choice < 0.7) packet = packet.slice(0, at);
        else if (choice < 0.85) packet = Uint8Array.from([...packet, Math.floor(random() * 256)]);
        else packet[at] = (packet[at] ?? 0) ^ (1 << Math.floor(random() * 8));
      }
      check(packet);
      if (parseQuery(packet).ok) stillValid += 1;
    }
    // Both outcomes must occur, or the mutations are not exercising the parser.
    assert.ok(stillValid > 100 && stillValid < 4900, `${stillValid} of 5000 stayed valid`);
  });
});

describe("reverse names", TIMEOUT, () => {
  it("maps IPv4 addresses to in-addr.arpa and back", TIMEOUT, () => {
    assert.equal(reverseName("10.60.0.5"), "5.0.60.10.in-addr.arpa");
    assert.equal(addressFromReverseName("5.0.60.10.in-addr.arpa"), "10.60.0.5");
    assert.equal(addressFromReverseName("5.0.60.10.IN-ADDR.ARPA."), "10.60.0.5");
    for (const address of ["0.0.0.0", "255.255.255.255", "192.0.2.1"]) {
      assert.equal(addressFromReverseName(reverseName(address)), address);
    }
  });

  it("maps IPv6 addresses to ip6.arpa nibbles and back, canonically", TIMEOUT, () => {
    const name = reverseName("fd00::5");
    assert.equal(name, `5.${"0.".repeat(29)}d.f.ip6.arpa`);
    assert.equal(addressFromReverseName(name), "fd00::5");
    assert.equal(addressFromReverseName(reverseName("FD00:0:0:0:0:0:0:0005")), "fd00::5");
    assert.equal(addressFromReverseName(reverseName("::ffff:192.0.2.1")), "::ffff:192.0.2.1");
  });

  it("returns undefined for names that are not a whole reverse address", TIMEOUT, () => {
    for (const name of [
      "web1",
      "in-addr.arpa",
      "0.60.10.in-addr.arpa",
      "1.5.0.60.10.in-addr.arpa",
      "256.0.60.10.in-addr.arpa",
      "05.0.60.10.in-addr.arpa",
      "x.0.60.10.in-addr.arpa",
      "5.0.60.10.in-addr.arpa.example",
      `${"0.".repeat(31)}ip6.arpa`,
      `${"0.".repeat(33)}ip6.arpa`,
      `${"0.".repeat(31)}g.ip6.arpa`,
      `${"0.".repeat(30)}00.ip6.arpa`,
    ]) {
      assert.equal(addressFromReverseName(name), undefined, name);
    }
  });

  it("refuses to reverse something that is not an address", TIMEOUT, () => {
    assert.throws(() => reverseName("web1"), /invalid IP address "web1"/);
  });
});

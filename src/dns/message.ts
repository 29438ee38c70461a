import { internal } from "../errors.ts";
import { formatAddress, parseAddress, tryParseAddress } from "../ipam/prefix.ts";

// RFC 1035 wire format, only as much as a responder for its own names needs: one question in,
// A/AAAA/PTR answers out. Pure: no sockets, clock or randomness.

/**
 * Record types (QTYPE values) this responder knows; OPT marks an EDNS query (RFC 6891), IXFR
 * and AXFR ask for a zone transfer.
 */
export const RecordType = {
  A: 1,
  PTR: 12,
  AAAA: 28,
  OPT: 41,
  IXFR: 251,
  AXFR: 252,
  ANY: 255,
} as const;
/** Record classes; only IN is served. */
export const RecordClass = { IN: 1 } as const;

/** The largest UDP reply a client without EDNS accepts (RFC 1035 §4.2.1). */
export const UDP_MAX_BYTES = 512;

const HEADER_BYTES = 12;
const MAX_NAME_BYTES = 255;
const MAX_LABEL_BYTES = 63;
/** The OPT record this responder adds to replies to EDNS queries: root name + 10 fixed bytes. */
const OPT_RECORD_BYTES = 11;
/**
 * The largest UDP reply to an EDNS query, and the payload size this responder advertises;
 * 1232 avoids IP fragmentation (DNS flag day 2020).
 */
export const EDNS_MAX_BYTES = 1232;

/**
 * Response codes this responder sends. FORMERR and NOTIMP are left out on purpose: Docker's
 * embedded DNS goes on to the next server of its `dns` setting only on REFUSED or SERVFAIL
 * (moby `libnetwork/resolver.go`, forwardExtDNS) and glibc never on FORMERR, so either would
 * end a lookup this responder merely does not serve. NXDOMAIN would end it too, and is never
 * sent: a name unknown here may well exist upstream.
 */
export type Rcode = "NOERROR" | "SERVFAIL" | "NXDOMAIN" | "REFUSED";

const RCODE_VALUES: Record<Rcode, number> = {
  NOERROR: 0,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  REFUSED: 5,
};

/** The one question of a query. */
export interface DnsQuestion {
  /** Lower-cased, labels joined by ".", no trailing dot; "" is the root. */
  name: string;
  type: number;
  class: number;
}

/** A query that passed {@link parseQuery}'s checks. */
export interface DnsQuery {
  id: number;
  recursionDesired: boolean;
  opcode: number;
  question: DnsQuestion;
  /** The question section exactly as received (name case included), echoed in replies. */
  rawQuestion: Uint8Array;
  /** True when the additional section held a well-formed OPT record. */
  hasEdns: boolean;
  /** The UDP payload size the client accepts: 512, or what its OPT record says when larger. */
  udpPayloadSize: number;
}

/**
 * What a reply repeats of the packet it answers: a whole {@link DnsQuery}, or as much of a
 * refused packet as could be read. Records need the question (their owner name points at it).
 */
export interface QueryEcho {
  id: number;
  opcode?: number;
  recursionDesired?: boolean;
  /** The question section exactly as received; without it a reply is a header only. */
  rawQuestion?: Uint8Array;
  hasEdns?: boolean;
}

/**
 * The outcome of {@link parseQuery}: a query to resolve, or a packet not served. Such a packet
 * is answered REFUSED when it has a query's header (`refusal`), so the client asks its next
 * server at once instead of after a timeout; the reply is never longer than the packet, so it
 * amplifies nothing. Without a header, or with QR set (a response), it is dropped.
 */
export type ParsedQuery =
  | { ok: true; query: DnsQuery }
  | { ok: false; reason: string; refusal?: QueryEcho };

/** One answer record; the owner name is always the question's. */
export type DnsRecord =
  | { type: "A"; address: string; ttl: number }
  | { type: "AAAA"; address: string; ttl: number }
  | { type: "PTR"; target: string; ttl: number };

/** What a resolver answers to a question. */
export interface DnsAnswer {
  rcode: Rcode;
  authoritative?: boolean;
  records?: DnsRecord[];
}

/** Options for {@link buildResponse}. */
export interface BuildOptions {
  /** Records that would make the reply longer are left out and TC is set (UDP). */
  maxBytes?: number;
}

// Header flag bits (RFC 1035 §4.1.1).
const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const OPCODE_SHIFT = 11;
const OPCODE_MASK = 0xf;
const OPCODE_QUERY = 0;

const readUint16 = (bytes: Uint8Array, offset: number): number =>
  ((bytes[offset] ?? 0) << 8) | (bytes[offset + 1] ?? 0);

/**
 * The offset just after an uncompressed name at `offset`, or undefined when it runs past the
 * end, uses a pointer or an extended label type, or is longer than 255 bytes. Only the
 * bounds: what the labels hold is {@link nameText}'s business.
 */
function nameEnd(packet: Uint8Array, offset: number): number | undefined {
  let at = offset;
  for (;;) {
    if (at >= packet.length) return undefined;
    const length = packet[at] ?? 0;
    // 0xC0 is a compression pointer, 0x40/0x80 are extended label types (RFC 6891 §5): a
    // question is the first name in a message, so there is nothing for a pointer to point to.
    if (length > MAX_LABEL_BYTES) return undefined;
    at += 1 + length;
    if (at - offset > MAX_NAME_BYTES || at > packet.length) return undefined;
    if (length === 0) return at;
  }
}

/**
 * The text of the name between `offset` and `end` (bounds from {@link nameEnd}): labels
 * lower-cased and joined by "."; undefined when a label holds a byte outside printable ASCII
 * or a "." (the text could then stand for another name).
 */
function nameText(packet: Uint8Array, offset: number, end: number): string | undefined {
  const labels: string[] = [];
  for (let at = offset; at < end - 1; ) {
    const length = packet[at] ?? 0;
    let label = "";
    for (let i = at + 1; i <= at + length; i++) {
      const byte = packet[i] ?? 0;
      if (byte < 0x21 || byte > 0x7e || byte === 0x2e) return undefined;
      label += String.fromCharCode(byte);
    }
    labels.push(label.toLowerCase());
    at += 1 + length;
  }
  return labels.join(".");
}

/** What the additional section says: EDNS or not, or undefined when it is malformed. */
function readAdditional(
  packet: Uint8Array,
  offset: number,
  count: number,
): { hasEdns: boolean; udpPayloadSize: number } | undefined {
  const plain = { hasEdns: false, udpPayloadSize: UDP_MAX_BYTES };
  if (count === 0) return plain;
  // No record is shorter than an OPT record (a 1-byte name and 10 fixed bytes); a count that
  // promises one the packet does not hold is malformed.
  if (offset + OPT_RECORD_BYTES > packet.length) return undefined;
  // Only an OPT record (root owner name) is looked at; anything else is ignored unread.
  if (packet[offset] !== 0 || readUint16(packet, offset + 1) !== RecordType.OPT) return plain;
  const dataLength = readUint16(packet, offset + 9);
  if (offset + OPT_RECORD_BYTES + dataLength > packet.length) return undefined;
  const advertised = readUint16(packet, offset + 3);
  return { hasEdns: true, udpPayloadSize: Math.max(UDP_MAX_BYTES, advertised) };
}

/**
 * Decodes and checks a query; never throws and never reads past the end of `packet`. Only a
 * plain QUERY with one question whose name is printable ASCII is served; anything else with a
 * query's header is refused, echoing the question when its bounds can be read.
 */
export function parseQuery(packet: Uint8Array): ParsedQuery {
  if (packet.length < HEADER_BYTES) return { ok: false, reason: "shorter than a DNS header" };
  const id = readUint16(packet, 0);
  const flags = readUint16(packet, 2);
  // A response sent to us is never answered: two responders could otherwise bounce forever.
  if ((flags & FLAG_QR) !== 0) return { ok: false, reason: "a response, not a query" };
  const opcode = (flags >> OPCODE_SHIFT) & OPCODE_MASK;
  const recursionDesired = (flags & FLAG_RD) !== 0;
  const questions = readUint16(packet, 4);
  const end = questions === 1 ? nameEnd(packet, HEADER_BYTES) : undefined;
  const questionEnd = end !== undefined && end + 4 <= packet.length ? end + 4 : undefined;
  // A copy: a Buffer's subarray would keep the whole receive buffer alive and mutable.
  const rawQuestion =
    questionEnd === undefined
      ? undefined
      : new Uint8Array(packet.subarray(HEADER_BYTES, questionEnd));
  const refuse = (reason: string): ParsedQuery => ({
    ok: false,
    reason,
    refusal: {
      id,
      opcode,
      recursionDesired,
      ...(rawQuestion === undefined ? {} : { rawQuestion }),
    },
  });
  if (opcode !== OPCODE_QUERY) return refuse(`opcode ${opcode}, not QUERY`);
  if (questions !== 1) return refuse(`${questions} questions`);
  if (readUint16(packet, 6) !== 0 || readUint16(packet, 8) !== 0)
    return refuse("records in the answer or authority section");
  const additionals = readUint16(packet, 10);
  if (additionals > 1) return refuse(`${additionals} additional records`);
  if (end === undefined || questionEnd === undefined || rawQuestion === undefined)
    return refuse("a question cut short, or a compressed, extended or over-long name");
  const name = nameText(packet, HEADER_BYTES, end);
  if (name === undefined) return refuse("a name with a byte outside printable ASCII");
  const additional = readAdditional(packet, questionEnd, additionals);
  if (additional === undefined) return refuse("a malformed additional record");
  return {
    ok: true,
    query: {
      id,
      recursionDesired,
      opcode,
      question: { name, type: readUint16(packet, end), class: readUint16(packet, end + 2) },
      rawQuestion,
      ...additional,
    },
  };
}

/** Encodes a name as uncompressed labels; throws when it is not a valid host or PTR name. */
function encodeName(name: string): Uint8Array {
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  const labels = trimmed === "" ? [] : trimmed.split(".");
  const bytes: number[] = [];
  for (const label of labels) {
    if (label.length === 0 || label.length > MAX_LABEL_BYTES || !/^[\x21-\x7e]+$/.test(label)) {
      throw internal(`cannot encode DNS name "${name}": bad label "${label}"`);
    }
    bytes.push(label.length);
    for (let i = 0; i < label.length; i++) bytes.push(label.charCodeAt(i));
  }
  bytes.push(0);
  if (bytes.length > MAX_NAME_BYTES) throw internal(`cannot encode DNS name "${name}": too long`);
  return Uint8Array.from(bytes);
}

/** The address as 4 or 16 bytes; throws when it is not an address of the record's family. */
function addressBytes(text: string, v6: boolean): Uint8Array {
  const address = tryParseAddress(text);
  if (address === undefined || address.v6 !== v6) {
    throw internal(
      `cannot encode ${v6 ? "AAAA" : "A"} record: "${text}" is not an IPv${v6 ? 6 : 4} address`,
    );
  }
  const bytes = new Uint8Array(v6 ? 16 : 4);
  for (let i = bytes.length - 1, value = address.value; i >= 0; i--, value >>= 8n) {
    bytes[i] = Number(value & 0xffn);
  }
  return bytes;
}

/** RFC 2181 §8: a TTL is a whole number of seconds from 0 to 2^31-1. */
const wireTtl = (ttl: number): number =>
  Number.isFinite(ttl) ? Math.min(Math.max(Math.trunc(ttl), 0), 0x7fffffff) : 0;

/** Encodes one answer record, its owner a pointer to the question name at offset 12. */
function encodeRecord(record: DnsRecord): Uint8Array {
  const [type, data] =
    record.type === "A"
      ? [RecordType.A, addressBytes(record.address, false)]
      : record.type === "AAAA"
        ? [RecordType.AAAA, addressBytes(record.address, true)]
        : [RecordType.PTR, encodeName(record.target)];
  const bytes = new Uint8Array(12 + data.length);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, 0xc000 | HEADER_BYTES);
  view.setUint16(2, type);
  view.setUint16(4, RecordClass.IN);
  view.setUint32(6, wireTtl(record.ttl));
  view.setUint16(10, data.length);
  bytes.set(data, 12);
  return bytes;
}

/**
 * Encodes a reply: QR set, opcode and RD copied, RA clear, the question echoed when known.
 * Records need the question (their owner name points at it), so a reply to an echo without
 * one carries none. Throws (Internal) when a record holds an address or name that cannot be
 * encoded.
 */
export function buildResponse(
  query: QueryEcho,
  answer: DnsAnswer,
  options: BuildOptions = {},
): Uint8Array {
  const question = query.rawQuestion ?? new Uint8Array(0);
  const records = query.rawQuestion === undefined ? [] : (answer.records ?? []).map(encodeRecord);
  // RFC 6891 §7: a responder answers an OPT record with one of its own.
  const edns = query.hasEdns === true;
  const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
  let length = HEADER_BYTES + question.length + (edns ? OPT_RECORD_BYTES : 0);
  let included = 0;
  for (const record of records) {
    if (length + record.length > maxBytes) break;
    length += record.length;
    included += 1;
  }
  const truncated = included < records.length;

  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  let flags =
    FLAG_QR |
    (((query.opcode ?? OPCODE_QUERY) & OPCODE_MASK) << OPCODE_SHIFT) |
    RCODE_VALUES[answer.rcode];
  if (answer.authoritative === true) flags |= FLAG_AA;
  if (truncated) flags |= FLAG_TC;
  if (query.recursionDesired === true) flags |= FLAG_RD;
  view.setUint16(0, query.id);
  view.setUint16(2, flags);
  view.setUint16(4, query.rawQuestion === undefined ? 0 : 1);
  view.setUint16(6, included);
  view.setUint16(8, 0);
  view.setUint16(10, edns ? 1 : 0);
  let at = HEADER_BYTES;
  bytes.set(question, at);
  at += question.length;
  for (const record of records.slice(0, included)) {
    bytes.set(record, at);
    at += record.length;
  }
  if (edns) {
    // Root owner, TYPE OPT, CLASS = our payload size, TTL 0 (no extended rcode, version 0).
    view.setUint16(at + 1, RecordType.OPT);
    view.setUint16(at + 3, EDNS_MAX_BYTES);
  }
  return bytes;
}

const IPV4_REVERSE_ZONE = "in-addr.arpa";
const IPV6_REVERSE_ZONE = "ip6.arpa";

/** The PTR name of an address: "5.0.60.10.in-addr.arpa", or 32 nibbles under "ip6.arpa". */
export function reverseName(address: string): string {
  const parsed = parseAddress(address);
  const parts: string[] = [];
  if (parsed.v6) {
    for (let shift = 0n; shift < 128n; shift += 4n) {
      parts.push(((parsed.value >> shift) & 0xfn).toString(16));
    }
    parts.push(IPV6_REVERSE_ZONE);
  } else {
    for (let shift = 0n; shift < 32n; shift += 8n) {
      parts.push(((parsed.value >> shift) & 0xffn).toString());
    }
    parts.push(IPV4_REVERSE_ZONE);
  }
  return parts.join(".");
}

const NIBBLE = /^[0-9a-f]$/;

/** The address a full PTR name stands for (canonical text), or undefined for any other name. */
export function addressFromReverseName(name: string): string | undefined {
  const lower = name.toLowerCase().replace(/\.$/, "");
  if (lower.endsWith(`.${IPV4_REVERSE_ZONE}`)) {
    const octets = lower.slice(0, -IPV4_REVERSE_ZONE.length - 1).split(".");
    if (octets.length !== 4) return undefined;
    // The strict parser refuses leading zeros and octets above 255 for us.
    const address = tryParseAddress(octets.reverse().join("."));
    return address === undefined || address.v6 ? undefined : formatAddress(address);
  }
  if (lower.endsWith(`.${IPV6_REVERSE_ZONE}`)) {
    const nibbles = lower.slice(0, -IPV6_REVERSE_ZONE.length - 1).split(".");
    if (nibbles.length !== 32 || !nibbles.every((nibble) => NIBBLE.test(nibble))) return undefined;
    const value = BigInt(`0x${nibbles.reverse().join("")}`);
    return formatAddress({ v6: true, value });
  }
  return undefined;
}

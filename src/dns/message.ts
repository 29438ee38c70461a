import { internal } from "../errors.ts";
import { formatAddress, parseAddress, tryParseAddress } from "../ipam/prefix.ts";

// RFC 1035 wire format, only as much as a responder for its own names needs: one question in,
// A/AAAA/PTR answers out. Pure: no sockets, clock or randomness.

/** Record types (QTYPE values) this responder knows; OPT marks an EDNS query (RFC 6891). */
export const RecordType = { A: 1, PTR: 12, AAAA: 28, OPT: 41, ANY: 255 } as const;
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

/** Response codes this responder sends. */
export type Rcode = "NOERROR" | "FORMERR" | "SERVFAIL" | "NXDOMAIN" | "NOTIMP" | "REFUSED";

const RCODE_VALUES: Record<Rcode, number> = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
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

/** The outcome of {@link parseQuery}: a query, or the error to answer (no id: drop the packet). */
export type ParsedQuery =
  | { ok: true; query: DnsQuery }
  | { ok: false; id: number | undefined; rcode: "FORMERR" | "NOTIMP" };

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

const formErr = (id: number): ParsedQuery => ({ ok: false, id, rcode: "FORMERR" });

const readUint16 = (bytes: Uint8Array, offset: number): number =>
  ((bytes[offset] ?? 0) << 8) | (bytes[offset + 1] ?? 0);

/**
 * Reads an uncompressed name at `offset`; returns the name and the offset after it, or
 * undefined when it runs past the end, uses a pointer or extended label type, is too long or
 * holds a byte outside printable ASCII or a "." inside a label.
 */
function readName(packet: Uint8Array, offset: number): { name: string; end: number } | undefined {
  const labels: string[] = [];
  let at = offset;
  for (;;) {
    if (at >= packet.length) return undefined;
    const length = packet[at] ?? 0;
    // 0xC0 is a compression pointer, 0x40/0x80 are extended label types (RFC 6891 §5): a
    // question is the first name in a message, so there is nothing for a pointer to point to.
    if (length > MAX_LABEL_BYTES) return undefined;
    at += 1;
    if (length === 0) break;
    if (at + length > packet.length) return undefined;
    let label = "";
    for (let i = at; i < at + length; i++) {
      const byte = packet[i] ?? 0;
      if (byte < 0x21 || byte > 0x7e || byte === 0x2e) return undefined;
      label += String.fromCharCode(byte);
    }
    labels.push(label.toLowerCase());
    at += length;
    if (at - offset > MAX_NAME_BYTES) return undefined;
  }
  if (at - offset > MAX_NAME_BYTES) return undefined;
  return { name: labels.join("."), end: at };
}

/** What the additional section says: EDNS or not, or malformed (FORMERR). */
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

/** Decodes and checks a query; never throws and never reads past the end of `packet`. */
export function parseQuery(packet: Uint8Array): ParsedQuery {
  if (packet.length < HEADER_BYTES) return { ok: false, id: undefined, rcode: "FORMERR" };
  const id = readUint16(packet, 0);
  const flags = readUint16(packet, 2);
  // A response sent to us is never answered: two responders could otherwise bounce forever.
  if ((flags & FLAG_QR) !== 0) return { ok: false, id: undefined, rcode: "FORMERR" };
  const opcode = (flags >> OPCODE_SHIFT) & OPCODE_MASK;
  if (opcode !== OPCODE_QUERY) return { ok: false, id, rcode: "NOTIMP" };
  const questions = readUint16(packet, 4);
  const answers = readUint16(packet, 6);
  const authorities = readUint16(packet, 8);
  const additionals = readUint16(packet, 10);
  if (questions !== 1 || answers !== 0 || authorities !== 0 || additionals > 1) return formErr(id);
  const name = readName(packet, HEADER_BYTES);
  if (name === undefined || name.end + 4 > packet.length) return formErr(id);
  const questionEnd = name.end + 4;
  const additional = readAdditional(packet, questionEnd, additionals);
  if (additional === undefined) return formErr(id);
  return {
    ok: true,
    query: {
      id,
      recursionDesired: (flags & FLAG_RD) !== 0,
      opcode,
      question: {
        name: name.name,
        type: readUint16(packet, name.end),
        class: readUint16(packet, name.end + 2),
      },
      // A copy: a Buffer's subarray would keep the whole receive buffer alive and mutable.
      rawQuestion: new Uint8Array(packet.subarray(HEADER_BYTES, questionEnd)),
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
 * Encodes a reply: QR set, RD copied, RA clear, the question echoed when known. Records need
 * the question (their owner name points at it), so a reply to a bare `{ id }` carries none.
 * Throws (Internal) when a record holds an address or name that cannot be encoded.
 */
export function buildResponse(
  query: DnsQuery | { id: number },
  answer: DnsAnswer,
  options: BuildOptions = {},
): Uint8Array {
  const full = "rawQuestion" in query ? query : undefined;
  const question = full?.rawQuestion ?? new Uint8Array(0);
  const records = full === undefined ? [] : (answer.records ?? []).map(encodeRecord);
  // RFC 6891 §7: a responder answers an OPT record with one of its own.
  const edns = full?.hasEdns === true;
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
    FLAG_QR | ((full?.opcode ?? OPCODE_QUERY) << OPCODE_SHIFT) | RCODE_VALUES[answer.rcode];
  if (answer.authoritative === true) flags |= FLAG_AA;
  if (truncated) flags |= FLAG_TC;
  if (full?.recursionDesired === true) flags |= FLAG_RD;
  view.setUint16(0, query.id);
  view.setUint16(2, flags);
  view.setUint16(4, full === undefined ? 0 : 1);
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

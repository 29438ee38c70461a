import {
  addressFromReverseName,
  type DnsAnswer,
  type DnsQuestion,
  RecordClass,
  RecordType,
} from "../dns/message.ts";
import { bareAddress, type StateDocument } from "../state/model.ts";
import type { NameTable } from "./name-table.ts";

/**
 * Seconds a client may keep an answer. Short: a name must stop resolving within 2 s of its
 * container's removal, and Docker's embedded DNS passes the answer on unchanged.
 */
const ANSWER_TTL = 1;

/**
 * The multi-host networks (VXLAN ids) whose names a client may resolve: those its container is
 * attached to on this host, found from the address it asks from. A container joined to several
 * multi-host networks asks from one of them (the route it got first) and resolves all of them,
 * as Docker resolves names on every network a container is on.
 */
export function networksOfClient(state: Readonly<StateDocument>, client: string): number[] {
  const asking = Object.values(state.endpoints).find(
    (endpoint) =>
      endpoint.address !== undefined &&
      bareAddress(endpoint.address) === client &&
      state.networks[endpoint.networkId]?.vxlanId !== undefined,
  );
  if (asking === undefined) return [];
  const endpoints =
    asking.sandbox === undefined
      ? [asking]
      : Object.values(state.endpoints).filter((endpoint) => endpoint.sandbox === asking.sandbox);
  const vnis = new Set<number>();
  for (const endpoint of endpoints) {
    const vni = state.networks[endpoint.networkId]?.vxlanId;
    if (vni !== undefined) vnis.add(vni);
  }
  return [...vnis];
}

/**
 * Answers a question Docker's embedded DNS forwarded because it does not know the name: the
 * containers of other hosts on the client's multi-host networks, and their reverse names. A
 * name it does not know either is REFUSED, so Docker asks the next server of its `dns` setting
 * (the upstream one); so is any class but IN and a zone transfer (there is no zone). Another
 * type of a name it knows is an empty NOERROR (NODATA), as an authoritative server answers:
 * the name is this cluster's, and upstream would only say it does not exist.
 */
export function answerQuestion(
  question: DnsQuestion,
  vnis: readonly number[],
  table: NameTable,
): DnsAnswer {
  const refused: DnsAnswer = { rcode: "REFUSED" };
  const { type } = question;
  if (question.class !== RecordClass.IN || vnis.length === 0) return refused;
  if (type === RecordType.AXFR || type === RecordType.IXFR) return refused;
  const address = addressFromReverseName(question.name);
  const reverse = address === undefined ? undefined : table.nameOf(vnis, address);
  if (reverse !== undefined) {
    if (type !== RecordType.PTR && type !== RecordType.ANY) return noData;
    return {
      rcode: "NOERROR",
      authoritative: true,
      records: [{ type: "PTR", target: reverse, ttl: ANSWER_TTL }],
    };
  }
  if (!table.has(vnis, question.name)) return refused;
  // Multi-host networks are IPv4 only: other types of a known name are empty, as Docker
  // answers AAAA for a container without IPv6.
  if (type !== RecordType.A && type !== RecordType.ANY) return noData;
  return {
    rcode: "NOERROR",
    authoritative: true,
    records: table
      .addresses(vnis, question.name)
      .map((address) => ({ type: "A" as const, address, ttl: ANSWER_TTL })),
  };
}

/** An empty answer for a name that exists (RFC 2308 §2.2 NODATA). */
const noData: DnsAnswer = { rcode: "NOERROR", authoritative: true, records: [] };

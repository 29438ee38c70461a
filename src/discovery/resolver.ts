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
 * as Docker resolves names on every network a container is on. One scan of the endpoints per
 * call: the resolver's hot path uses {@link memoiseClientNetworks} instead.
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

/** Client address → the VXLAN ids it may resolve (as {@link networksOfClient}), for one state. */
export type ClientNetworks = ReadonlyMap<string, readonly number[]>;

/** {@link networksOfClient} for every client of a state at once, in two passes over its endpoints. */
export function indexClientNetworks(state: Readonly<StateDocument>): ClientNetworks {
  const endpoints = Object.values(state.endpoints);
  const bySandbox = new Map<string, Set<number>>();
  for (const endpoint of endpoints) {
    const vni = state.networks[endpoint.networkId]?.vxlanId;
    if (endpoint.sandbox === undefined || vni === undefined) continue;
    const vnis = bySandbox.get(endpoint.sandbox) ?? new Set<number>();
    vnis.add(vni);
    bySandbox.set(endpoint.sandbox, vnis);
  }
  const byClient = new Map<string, readonly number[]>();
  for (const endpoint of endpoints) {
    const vni = state.networks[endpoint.networkId]?.vxlanId;
    if (endpoint.address === undefined || vni === undefined) continue;
    const client = bareAddress(endpoint.address);
    // The first endpoint with the address answers for it, as networksOfClient's find does.
    if (byClient.has(client)) continue;
    const sandbox = endpoint.sandbox === undefined ? undefined : bySandbox.get(endpoint.sandbox);
    byClient.set(client, sandbox === undefined ? [vni] : [...sandbox]);
  }
  return byClient;
}

const NO_NETWORKS: readonly number[] = [];

/**
 * The networks of a client from an index built at most once per state change, so a query costs
 * a map lookup whatever the host holds. `revision` must change whenever the document's
 * networks or endpoints do: the state manager changes records in place (a commit replaces
 * records inside the same document), so the document's identity alone says nothing.
 */
export function memoiseClientNetworks(
  state: () => Readonly<StateDocument>,
  revision: () => unknown,
): (client: string) => readonly number[] {
  let built: { document: object; revision: unknown; index: ClientNetworks } | undefined;
  return (client) => {
    const document = state();
    const now = revision();
    if (built === undefined || built.document !== document || built.revision !== now) {
      built = { document, revision: now, index: indexClientNetworks(document) };
    }
    return built.index.get(client) ?? NO_NETWORKS;
  };
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

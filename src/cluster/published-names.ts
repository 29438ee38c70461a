import { formatAddress, tryParseAddress } from "../ipam/prefix.ts";

// What hosts publish in etcd so the others resolve their containers' names: the record, and
// the checks both ends apply (a writer publishes only names a resolver can match; a reader
// trusts nothing another host wrote until it parsed it).

/**
 * What a host publishes about one of its containers on a multi-host network, so the other
 * hosts' resolvers answer its names: the container's name, network aliases (and short ID),
 * lower-case, and its address there.
 */
export interface NameRecord {
  names: string[];
  ipv4: string;
}

/** A {@link NameRecord} as read back from etcd: which host published it, for which endpoint. */
export interface PublishedName extends NameRecord {
  hostId: string;
  endpointId: string;
}

/** A name as Docker's resolver matches it: lower-case letters, digits, `_`, `-` and dots. */
const NAME = /^[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?$/;

/** Names as published: lower-cased, without duplicates, only those a resolver can match. */
export function publishableNames(names: readonly unknown[]): string[] {
  const valid = names
    .filter((name): name is string => typeof name === "string")
    .map((name) => name.toLowerCase())
    .filter((name) => NAME.test(name));
  return [...new Set(valid)];
}

/**
 * Reads a `names/HOST/ENDPOINT` entry another host wrote; anything malformed (a hostile or
 * newer writer) is left out rather than trusted.
 */
export function parsePublishedName(below: string, value: string): PublishedName | undefined {
  const [hostId, endpointId, extra] = below.split("/");
  if (!hostId || !endpointId || extra !== undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const { names, ipv4 } = parsed as { names?: unknown; ipv4?: unknown };
  if (!Array.isArray(names) || typeof ipv4 !== "string") return undefined;
  const address = tryParseAddress(ipv4);
  if (address === undefined || address.v6) return undefined;
  // Our writers publish names already in this form; anything else is not trusted.
  const valid = publishableNames(names);
  if (valid.length === 0 || valid.join("\n") !== names.join("\n")) return undefined;
  return { hostId, endpointId, names: valid, ipv4: formatAddress(address) };
}

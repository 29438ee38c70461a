import { badRequest } from "../errors.ts";

/** An IPv4 or IPv6 address as an unsigned integer of 32 or 128 bits. */
export interface IpAddress {
  readonly v6: boolean;
  readonly value: bigint;
}

/** An address with a prefix length; `address` may have host bits set until canonicalised. */
export interface IpPrefix {
  readonly v6: boolean;
  readonly address: bigint;
  readonly length: number;
}

/** The number of bits in an address of the family. */
export const addressBits = (v6: boolean): 32 | 128 => (v6 ? 128 : 32);

/** "IPv4" or "IPv6", for messages. */
export const familyName = (v6: boolean): string => (v6 ? "IPv6" : "IPv4");

// Strict dotted quad: exactly four decimal octets, no leading zeros (they read as octal in
// some tools, so "010.0.0.1" is ambiguous and Go's netip refuses it too).
const IPV4_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!IPV4_OCTET.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

function parseIpv6Groups(text: string): number[] | undefined {
  if (text === "") return [];
  const groups: number[] = [];
  const parts = text.split(":");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? "";
    if (i === parts.length - 1 && part.includes(".")) {
      // An embedded IPv4 tail (::ffff:192.0.2.1) stands for the last two groups.
      const v4 = parseIpv4(part);
      if (v4 === undefined) return undefined;
      groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      continue;
    }
    if (!IPV6_GROUP.test(part)) return undefined;
    groups.push(Number.parseInt(part, 16));
  }
  return groups;
}

function parseIpv6(text: string): bigint | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseIpv6Groups(halves[0] ?? "");
    const tail = parseIpv6Groups(halves[1] ?? "");
    if (head === undefined || tail === undefined) return undefined;
    // "::" stands for at least one zero group.
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    const all = parseIpv6Groups(text);
    if (all === undefined || all.length !== 8) return undefined;
    groups = all;
  }
  // An embedded IPv4 tail is only valid in the last 32 bits.
  const dot = text.lastIndexOf(".");
  if (dot !== -1 && text.lastIndexOf(":") > dot) return undefined;
  let value = 0n;
  for (const group of groups) value = (value << 16n) | BigInt(group);
  return value;
}

/** Parses a bare address ("10.0.0.5", "fd00::5"), or returns undefined. */
export function tryParseAddress(text: string): IpAddress | undefined {
  if (text.includes(":")) {
    const value = parseIpv6(text);
    return value === undefined ? undefined : { v6: true, value };
  }
  const value = parseIpv4(text);
  return value === undefined ? undefined : { v6: false, value };
}

/** Parses a bare address; throws badRequest naming the text when it is not one. */
export function parseAddress(text: string): IpAddress {
  const address = tryParseAddress(text);
  if (address === undefined) throw badRequest(`invalid IP address "${text}"`);
  return address;
}

const PREFIX_LENGTH = /^(0|[1-9][0-9]{0,2})$/;

/** Parses "10.15.20.0/24" or "fd00::/64"; host bits may be set (see {@link isNetworkPrefix}). */
export function parsePrefix(text: string): IpPrefix {
  const slash = text.indexOf("/");
  if (slash === -1) throw badRequest(`invalid CIDR "${text}": missing "/prefix-length"`);
  const address = tryParseAddress(text.slice(0, slash));
  if (address === undefined) {
    throw badRequest(`invalid CIDR "${text}": "${text.slice(0, slash)}" is not an IP address`);
  }
  const lengthText = text.slice(slash + 1);
  const maxLength = addressBits(address.v6);
  const length = PREFIX_LENGTH.test(lengthText) ? Number(lengthText) : Number.NaN;
  if (!(length <= maxLength)) {
    throw badRequest(
      `invalid CIDR "${text}": prefix length must be 0-${maxLength} for ${familyName(address.v6)}`,
    );
  }
  return { v6: address.v6, address: address.value, length };
}

/** Parses "10.15.20.0/24" like {@link parsePrefix}, or returns undefined instead of throwing. */
export function tryParsePrefix(text: string): IpPrefix | undefined {
  try {
    return parsePrefix(text);
  } catch {
    return undefined;
  }
}

/** Parses "10.0.0.5" or "10.0.0.5/24" (the length is checked for syntax, then ignored). */
export function parseAddressOrPrefix(text: string): IpAddress {
  if (!text.includes("/")) return parseAddress(text);
  const prefix = parsePrefix(text);
  return { v6: prefix.v6, value: prefix.address };
}

function formatIpv4(value: bigint): string {
  const n = Number(value);
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

// RFC 5952: lower case, no leading zeros, the longest run (first if tied) of two or more zero
// groups becomes "::"; IPv4-mapped addresses keep their dotted tail, as Go's netip prints them.
function formatIpv6(value: bigint): string {
  if (value >> 32n === 0xffffn) return `::ffff:${formatIpv4(value & 0xffffffffn)}`;
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart === -1) return hex.join(":");
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLength).join(":");
  return `${head}::${tail}`;
}

/** Formats an address canonically: dotted quad, or RFC 5952 compressed IPv6. */
export function formatAddress(address: IpAddress): string {
  return address.v6 ? formatIpv6(address.value) : formatIpv4(address.value);
}

/** Formats a prefix as "address/length" (the address as stored, host bits and all). */
export function formatPrefix(prefix: IpPrefix): string {
  return `${formatAddress({ v6: prefix.v6, value: prefix.address })}/${prefix.length}`;
}

/** How many addresses the prefix spans (2^host-bits). */
export const prefixSize = (prefix: IpPrefix): bigint =>
  1n << BigInt(addressBits(prefix.v6) - prefix.length);

/** The prefix with its host bits cleared. */
export function networkOf(prefix: IpPrefix): IpPrefix {
  const hostMask = prefixSize(prefix) - 1n;
  return { v6: prefix.v6, address: prefix.address & ~hostMask, length: prefix.length };
}

/** True when no host bit is set, i.e. the text names a network and not a host in it. */
export const isNetworkPrefix = (prefix: IpPrefix): boolean =>
  networkOf(prefix).address === prefix.address;

/** The first (network) address of a prefix. */
export const firstAddress = (prefix: IpPrefix): bigint => networkOf(prefix).address;

/** The last address of a prefix (the IPv4 broadcast address when the prefix is <= /30). */
export const lastAddress = (prefix: IpPrefix): bigint =>
  firstAddress(prefix) + prefixSize(prefix) - 1n;

/** True when the address lies inside the prefix (same family). */
export function prefixContainsAddress(prefix: IpPrefix, address: IpAddress): boolean {
  return (
    prefix.v6 === address.v6 &&
    address.value >= firstAddress(prefix) &&
    address.value <= lastAddress(prefix)
  );
}

/** True when `inner` lies entirely inside `outer` (equal prefixes count). */
export function prefixContains(outer: IpPrefix, inner: IpPrefix): boolean {
  return (
    outer.v6 === inner.v6 &&
    inner.length >= outer.length &&
    firstAddress(inner) >= firstAddress(outer) &&
    lastAddress(inner) <= lastAddress(outer)
  );
}

/** True when the two prefixes share at least one address (same family). */
export function prefixesOverlap(a: IpPrefix, b: IpPrefix): boolean {
  return a.v6 === b.v6 && firstAddress(a) <= lastAddress(b) && firstAddress(b) <= lastAddress(a);
}

/** How many `/length` subnets `base` splits into; 0 when `length` is shorter than the base's. */
export function subnetCount(base: IpPrefix, length: number): bigint {
  if (length < base.length || length > addressBits(base.v6)) return 0n;
  return 1n << BigInt(length - base.length);
}

/** The `index`-th (from 0) `/length` subnet of `base`. */
export function nthSubnet(base: IpPrefix, length: number, index: bigint): IpPrefix {
  const step = 1n << BigInt(addressBits(base.v6) - length);
  return { v6: base.v6, address: firstAddress(base) + index * step, length };
}

import { badRequest } from "../errors.ts";
import {
  addressBits,
  familyName,
  formatPrefix,
  type IpPrefix,
  isNetworkPrefix,
  networkOf,
  parsePrefix,
  subnetCount,
} from "./prefix.ts";

/** A range that pools without an explicit subnet are cut from: `base` split into `/size`. */
export interface DefaultPool {
  base: string;
  size: number;
}

/** What the allocator needs from the plugin's settings. */
export interface IpamSettings {
  defaultPoolsV4: DefaultPool[];
  defaultPoolsV6: DefaultPool[];
}

/** A default pool checked and parsed once, ready for candidate arithmetic. */
export interface ParsedDefaultPool {
  readonly base: IpPrefix;
  readonly size: number;
  /** How many `/size` subnets the base holds. */
  readonly count: bigint;
  /** Distance between consecutive subnets. */
  readonly step: bigint;
}

/**
 * Docker's own defaults for IPv4 (libnetwork `ipamutils`): 172.17.0.0/16 … 172.31.0.0/16 as one
 * /16 each (172.16.0.0/16 is left out, as Docker does), then 192.168.0.0/16 cut into /20s:
 * 15 + 16 = 31 networks.
 */
const DEFAULT_POOLS_V4: readonly DefaultPool[] = [
  ...Array.from({ length: 15 }, (_, i) => ({ base: `172.${17 + i}.0.0/16`, size: 16 })),
  { base: "192.168.0.0/16", size: 20 },
];

/**
 * Docker has no IPv6 default pool a plugin could copy, so Switchyard uses one fixed
 * unique-local /40 (RFC 4193, global ID 5b:7c1e:ad) cut into /64s: 16.7 million networks.
 */
const DEFAULT_POOLS_V6: readonly DefaultPool[] = [{ base: "fd5b:7c1e:ad00::/40", size: 64 }];

/** Fresh copies of the built-in default pools (see DEFAULT_POOLS_V4/V6 for the choice). */
export function defaultIpamSettings(): IpamSettings {
  return {
    defaultPoolsV4: DEFAULT_POOLS_V4.map((pool) => ({ ...pool })),
    defaultPoolsV6: DEFAULT_POOLS_V6.map((pool) => ({ ...pool })),
  };
}

/**
 * Checks a default pool: `base` a network CIDR (of the given family when `v6` is set) and
 * `size` a prefix length from the base's own up to 32/128. Throws badRequest.
 */
export function checkDefaultPool(pool: DefaultPool, v6?: boolean): ParsedDefaultPool {
  const base = parsePrefix(pool.base);
  if (v6 !== undefined && base.v6 !== v6) {
    throw badRequest(
      `default pool ${pool.base} is ${familyName(base.v6)}, but it is listed with the ${familyName(v6)} pools`,
    );
  }
  if (!isNetworkPrefix(base)) {
    throw badRequest(
      `default pool "${pool.base}" is not a network address; did you mean ${formatPrefix(networkOf(base))}?`,
    );
  }
  const maxBits = addressBits(base.v6);
  if (!Number.isInteger(pool.size) || pool.size < base.length || pool.size > maxBits) {
    throw badRequest(
      `default pool ${pool.base}: size ${pool.size} must be a prefix length from ${base.length} to ${maxBits}`,
    );
  }
  return {
    base,
    size: pool.size,
    count: subnetCount(base, pool.size),
    step: 1n << BigInt(maxBits - pool.size),
  };
}

/**
 * Parses a setting like "172.17.0.0/16:16,192.168.0.0/16:20" (IPv6: "fd00::/40:64"); blank
 * text is an empty list. With `v6` given, every base must be of that family. Throws badRequest.
 */
export function parseDefaultPools(text: string, v6?: boolean): DefaultPool[] {
  if (text.trim() === "") return [];
  return text.split(",").map((item) => {
    const trimmed = item.trim();
    const colon = trimmed.indexOf(":", trimmed.indexOf("/"));
    const sizeText = colon === -1 ? "" : trimmed.slice(colon + 1);
    if (trimmed.indexOf("/") === -1 || !/^[0-9]{1,3}$/.test(sizeText)) {
      throw badRequest(`invalid default pool "${trimmed}": expected BASE/LENGTH:SIZE`);
    }
    const pool = { base: trimmed.slice(0, colon), size: Number(sizeText) };
    checkDefaultPool(pool, v6);
    return pool;
  });
}

import type { NetworkRecord } from "../../src/state/model.ts";

/**
 * A network record as the driver would make it for `pool` (gateway .1): a bridge Switchyard
 * owns, ICC and masquerading on, not internal, IPv4 only; `extra` overrides any field.
 */
export function networkRecord(
  id: string,
  bridge: string,
  pool: string,
  extra: Partial<NetworkRecord> = {},
): NetworkRecord {
  return {
    id,
    bridge,
    bridgeOwned: true,
    ipv4: [{ pool, gateway: pool.replace(/0\/(\d+)$/, "1/$1") }],
    ipv6: [],
    internal: false,
    enableIpv6: false,
    icc: true,
    masquerade: true,
    options: {},
    ...extra,
  };
}

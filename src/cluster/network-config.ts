import { internal } from "../errors.ts";

/** What every host of a multi-host network must agree on. */
export interface ClusterNetworkConfig {
  subnet: string;
  gateway: string;
}

/**
 * The network's record in etcd: the agreed config, and the block length the first host chose,
 * which every host then uses (blocks of different lengths would overlap).
 */
export interface StoredConfig extends ClusterNetworkConfig {
  blockLength?: number;
}

/** What this host knows of a network it joined: its config, and the agreed block length. */
export interface JoinedNetwork {
  config: ClusterNetworkConfig;
  blockLength: number;
}

/** The network's record in etcd, or Internal when it is not one Switchyard wrote. */
export function parseStoredConfig(vni: number, text: string): StoredConfig {
  try {
    const parsed = JSON.parse(text) as StoredConfig;
    if (typeof parsed.subnet === "string" && typeof parsed.gateway === "string") return parsed;
  } catch {}
  throw internal(`vxlan.id ${vni}: etcd holds a record Switchyard cannot read: ${text}`);
}

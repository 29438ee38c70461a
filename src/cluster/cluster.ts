import type { Logger } from "pino";
import { badRequest, conflict, exhausted } from "../errors.ts";
import { formatPrefix, nthSubnet, parsePrefix, subnetCount } from "../ipam/prefix.ts";
import type { KeyValueStore } from "./kv.ts";

/** Where this host's share of multi-host state lives in etcd. */
const ROOT = "switchyard/v1/networks";
const LEASE_TTL_SECONDS = 15;

/** What every host of a multi-host network must agree on. */
export interface ClusterNetworkConfig {
  subnet: string;
  gateway: string;
}

/** This host in the cluster. */
export interface ClusterIdentity {
  /** Stable across restarts (kept in the local state). */
  hostId: string;
  /** The underlay address VXLAN traffic to this host goes to. */
  vtep: string;
}

/**
 * A host's view of the cluster: which hosts share each multi-host network (VXLAN id), which
 * address blocks this host holds, which static addresses are taken cluster-wide. All of it
 * lives in etcd; hosts' entries carry a lease, so a dead host ages out.
 */
export class ClusterService {
  readonly #kv: KeyValueStore;
  readonly #logger: Logger;
  readonly #blockLength: number;
  readonly #identity: ClusterIdentity;
  readonly #watches = new Map<number, AbortController>();
  readonly #members = new Set<number>();
  /** The grant in flight or done, shared so networks joined at once get one lease. */
  #lease: Promise<string> | undefined;
  #keepAlive: NodeJS.Timeout | undefined;
  /** Set from losing the lease until every network has this host's entry again. */
  #registrationLost = false;
  readonly #onPeers: (vni: number, peers: string[]) => void;

  constructor(deps: {
    /** etcd in production; tests share one in-memory store between several services. */
    kv: KeyValueStore;
    logger: Logger;
    identity: ClusterIdentity;
    blockLength: number;
    onPeers: (vni: number, peers: string[]) => void;
  }) {
    this.#kv = deps.kv;
    this.#logger = deps.logger;
    this.#identity = deps.identity;
    this.#blockLength = deps.blockLength;
    this.#onPeers = deps.onPeers;
  }

  get identity(): ClusterIdentity {
    return this.#identity;
  }

  /**
   * Joins (or re-joins) a multi-host network: records its subnet and gateway the first time,
   * refuses a different one later, registers this host so the others send it traffic, and
   * starts following the other hosts.
   */
  async joinNetwork(vni: number, config: ClusterNetworkConfig): Promise<void> {
    const key = `${ROOT}/${vni}/config`;
    const wanted = JSON.stringify(config);
    if (!(await this.#kv.create(key, wanted))) {
      const existing = await this.#kv.get(key);
      if (existing !== undefined && existing !== wanted) {
        const other = JSON.parse(existing) as ClusterNetworkConfig;
        throw conflict(
          `vxlan.id ${vni} is already used with subnet ${other.subnet} and gateway ${other.gateway} on other hosts; create the network with the same --subnet and --gateway on every host`,
        );
      }
    }
    await this.#register(vni);
    this.#members.add(vni);
    this.#follow(vni);
  }

  /** Leaves a multi-host network: drops this host's blocks and entries; the last host clears it. */
  async leaveNetwork(vni: number, blocks: readonly string[]): Promise<void> {
    this.#watches.get(vni)?.abort();
    this.#watches.delete(vni);
    this.#members.delete(vni);
    const base = `${ROOT}/${vni}`;
    for (const block of blocks) await this.#kv.delete(`${base}/blocks/${blockKey(block)}`);
    for (const entry of await this.#kv.range(`${base}/addresses/`)) {
      if (entry.value === this.#identity.hostId) await this.#kv.delete(entry.key);
    }
    await this.#kv.delete(`${base}/hosts/${this.#identity.hostId}`);
    if ((await this.#kv.range(`${base}/hosts/`)).length === 0)
      await this.#kv.deletePrefix(`${base}/`);
    if (this.#members.size === 0) await this.#dropLease();
  }

  /** Claims a free address block of the network's subnet for this host. */
  async claimBlock(vni: number, subnet: string, held: readonly string[]): Promise<string> {
    const prefix = parsePrefix(subnet);
    const length = Math.max(prefix.length, Math.min(this.#blockLength, prefix.v6 ? 128 : 32));
    const count = subnetCount(prefix, length);
    const taken = new Set(
      (await this.#kv.range(`${ROOT}/${vni}/blocks/`)).map((entry) => entry.key.split("/").pop()),
    );
    for (let index = 0n; index < count; index++) {
      const block = formatPrefix(nthSubnet(prefix, length, index));
      if (held.includes(block) || taken.has(blockKey(block))) continue;
      if (
        await this.#kv.create(`${ROOT}/${vni}/blocks/${blockKey(block)}`, this.#identity.hostId)
      ) {
        this.#logger.info({ vni, block }, "claimed address block");
        return block;
      }
    }
    throw exhausted(`no free address block left in ${subnet} (every /${length} is held by a host)`);
  }

  /** Takes a static address (`--ip`) cluster-wide; Conflict when another host holds it. */
  async claimAddress(vni: number, address: string): Promise<void> {
    const key = `${ROOT}/${vni}/addresses/${address}`;
    if (await this.#kv.create(key, this.#identity.hostId)) return;
    const holder = await this.#kv.get(key);
    if (holder !== this.#identity.hostId) {
      throw conflict(
        `address ${address} is already in use on another host (${holder ?? "unknown"}) of vxlan.id ${vni}`,
      );
    }
  }

  /** Gives back a static address taken with {@link claimAddress}; others' are left alone. */
  async releaseAddress(vni: number, address: string): Promise<void> {
    const key = `${ROOT}/${vni}/addresses/${address}`;
    if ((await this.#kv.get(key)) === this.#identity.hostId) await this.#kv.delete(key);
  }

  /** Re-joins every network after a restart, retrying until etcd answers. */
  resume(networks: { vni: number; config: ClusterNetworkConfig }[]): void {
    for (const { vni, config } of networks) {
      const attempt = (): void => {
        this.joinNetwork(vni, config).catch((error: unknown) => {
          this.#logger.warn({ err: error, vni }, "cannot rejoin multi-host network yet; retrying");
          setTimeout(attempt, 2_000).unref();
        });
      };
      attempt();
    }
  }

  /** Stops keep-alives and watches (at shutdown); the lease then ages out. */
  stop(): void {
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
    for (const watch of this.#watches.values()) watch.abort();
    this.#watches.clear();
  }

  async #register(vni: number): Promise<void> {
    const lease = await this.#ensureLease();
    await this.#kv.put(`${ROOT}/${vni}/hosts/${this.#identity.hostId}`, this.#identity.vtep, lease);
  }

  #ensureLease(): Promise<string> {
    if (this.#lease === undefined) {
      const granted = this.#kv.grantLease(LEASE_TTL_SECONDS);
      this.#lease = granted;
      // A failed grant is forgotten, so the next registration or renewal asks again.
      granted.catch(() => {
        if (this.#lease === granted) this.#lease = undefined;
      });
    }
    // The timer runs from the first registration until the last leave (or stop), whatever
    // happens to the lease in between: it is what repairs a lost one.
    if (this.#keepAlive === undefined) {
      this.#keepAlive = setInterval(() => void this.renewLease(), (LEASE_TTL_SECONDS * 1000) / 3);
      this.#keepAlive.unref();
    }
    return this.#lease;
  }

  /**
   * What the keep-alive timer runs: keeps the lease alive; if it expired while etcd was away,
   * registers again, and keeps trying on later runs until every network has this host back.
   * Public so tests drive it without waiting for the timer.
   */
  async renewLease(): Promise<void> {
    try {
      const current = this.#lease;
      const lease = await current;
      const alive = lease !== undefined && (await this.#kv.keepAlive(lease));
      if (alive && !this.#registrationLost) return;
      if (!alive && lease !== undefined) {
        this.#logger.warn("etcd lease expired; registering this host again");
        if (this.#lease === current) this.#lease = undefined;
      }
      this.#registrationLost = true;
      for (const vni of this.#members) await this.#register(vni);
      this.#registrationLost = false;
    } catch (error) {
      this.#logger.warn({ err: error }, "cannot renew etcd lease; running containers keep working");
    }
  }

  async #dropLease(): Promise<void> {
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
    const lease = this.#lease;
    this.#lease = undefined;
    this.#registrationLost = false;
    if (lease !== undefined) {
      await lease.then((id) => this.#kv.revokeLease(id)).catch(() => undefined);
    }
  }

  /** Lists the network's hosts, then watches for changes; re-lists whenever the watch breaks. */
  #follow(vni: number): void {
    if (this.#watches.has(vni)) return;
    const controller = new AbortController();
    this.#watches.set(vni, controller);
    const prefix = `${ROOT}/${vni}/hosts/`;
    const loop = async (): Promise<void> => {
      while (!controller.signal.aborted) {
        try {
          const peers = new Map<string, string>();
          const listing = await this.#kv.snapshot(prefix);
          for (const entry of listing.entries) peers.set(entry.key, entry.value);
          const publish = () =>
            this.#onPeers(
              vni,
              [...peers.entries()]
                .filter(([key]) => !key.endsWith(`/${this.#identity.hostId}`))
                .map(([, vtep]) => vtep)
                .sort(),
            );
          publish();
          await this.#kv.watch(
            prefix,
            (event) => {
              if (event.type === "DELETE") peers.delete(event.key);
              else peers.set(event.key, event.value);
              publish();
            },
            controller.signal,
            listing.revision,
          );
        } catch (error) {
          this.#logger.debug({ err: error, vni }, "watch of peers broke");
        }
        if (!controller.signal.aborted) await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    };
    void loop();
  }
}

/** Block CIDRs as etcd key segments ("/" is the key separator). */
const blockKey = (block: string): string => block.replace("/", "_");

/** Parses and checks a `vxlan.id` option value. */
export function parseVxlanId(value: string): number {
  const id = /^[0-9]{1,8}$/.test(value) ? Number(value) : Number.NaN;
  if (!(id >= 1 && id <= 16_777_215)) {
    throw badRequest(`option vxlan.id="${value}" must be a whole number from 1 to 16777215`);
  }
  return id;
}

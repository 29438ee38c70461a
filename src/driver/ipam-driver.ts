import type { Logger } from "pino";
import type { ClusterService } from "../cluster/cluster.ts";
import { badRequest, internal, SwitchyardError } from "../errors.ts";
import { Ipam } from "../ipam/ipam.ts";
import type { IpPrefix } from "../ipam/prefix.ts";
import { OptionKeys } from "../protocol/wire.ts";
import { bareAddress, type ClusterNetworkRecord } from "../state/model.ts";
import type { StateManager } from "../state/state-manager.ts";
import type { AddressNames } from "./address-names.ts";
import { ClusterLink } from "./cluster-link.ts";

/**
 * The IPAM driver: the pure allocator, with every change committed before it is answered.
 * etcd calls for multi-host networks run outside the state queue, with an undo commit when
 * they fail.
 */
export class IpamDriver {
  readonly #state: StateManager;
  /** The multi-host side, shared with the network driver (it may come up after start). */
  readonly #cluster: ClusterLink;
  readonly #logger: Logger | undefined;
  /** Block claims in flight per VXLAN id: one at a time, so a burst claims one block, not many. */
  readonly #claiming = new Map<number, Promise<void>>();

  /** The prefixes routed or addressed on this host, which automatic pools must not overlap. */
  readonly #hostPrefixes: () => Promise<IpPrefix[]>;
  /** Whether the Docker that runs this plugin names the container in RequestAddress (29+). */
  readonly #dockerSendsNames: boolean;
  /** Names sent with RequestAddress, for the network driver's CreateEndpoint. */
  readonly #addressNames: AddressNames | undefined;

  constructor(deps: {
    state: StateManager;
    hostPrefixes: () => Promise<IpPrefix[]>;
    cluster?: ClusterService;
    /** The multi-host side shared with the network driver (main.ts sets it up after start). */
    clusterLink?: ClusterLink;
    logger?: Logger;
    /** Docker 29 and later send the container's name with RequestAddress (default: true). */
    dockerSendsNames?: boolean;
    /** Shared with the network driver, which gives each endpoint its container's name. */
    addressNames?: AddressNames;
  }) {
    this.#state = deps.state;
    this.#hostPrefixes = deps.hostPrefixes;
    this.#cluster = deps.clusterLink ?? new ClusterLink(deps.cluster);
    this.#logger = deps.logger;
    this.#dockerSendsNames = deps.dockerSendsNames ?? true;
    this.#addressNames = deps.addressNames;
  }

  /** The multi-host network a pool belongs to, if any. */
  #clusterNetwork(poolId: string): ClusterNetworkRecord | undefined {
    return Object.values(this.#state.document.cluster?.networks ?? {}).find(
      (network) => network.poolId === poolId,
    );
  }

  defaultAddressSpaces(): { local: string; global: string } {
    return { local: Ipam.localAddressSpace, global: Ipam.globalAddressSpace };
  }

  /**
   * RequestPool. An automatic subnet skips every prefix routed or addressed on the host (read
   * before the commit, outside the queue), as Docker's bridge does, instead of handing out a
   * clashing subnet and relying on Docker to retry.
   */
  async requestPool(input: {
    addressSpace?: string;
    pool?: string;
    subPool?: string;
    v6?: boolean;
    options?: Record<string, string> | null;
  }): Promise<{ poolId: string; pool: string }> {
    if ((input.subPool ?? "") !== "" && (input.pool ?? "") === "") {
      throw badRequest("an ip-range (SubPool) needs a subnet (Pool) too");
    }
    const pool = input.pool || undefined;
    const sticky = parseSticky(input.options?.[OptionKeys.sticky]);
    if (sticky && !this.#dockerSendsNames) throw stickyNeedsNames();
    const avoid = pool === undefined ? await this.#hostPrefixes() : [];
    return this.#state.commit((_state, ipam) =>
      ipam.requestPool({
        addressSpace: input.addressSpace || Ipam.localAddressSpace,
        pool,
        subPool: input.subPool || undefined,
        v6: input.v6 ?? false,
        options: input.options ?? {},
        sticky,
        avoid,
      }),
    );
  }

  releasePool(poolId: string): Promise<void> {
    return this.#state.commit((_state, ipam) => ipam.releasePool(poolId));
  }

  /**
   * RequestAddress. The container's name, when Docker sends it (29 and later), is kept for
   * the CreateEndpoint that brings the address ({@link AddressNames}).
   */
  async requestAddress(input: {
    poolId: string;
    address?: string;
    options?: Record<string, string> | null;
  }): Promise<string> {
    const allocated = await this.#allocate(input);
    const rawName = input.options?.[OptionKeys.endpointName];
    if (rawName !== undefined && this.#addressNames !== undefined) {
      const name = validContainerName(rawName);
      if (name !== undefined) this.#addressNames.remember(bareAddress(allocated), name);
    }
    return allocated;
  }

  async #allocate(input: {
    poolId: string;
    address?: string;
    options?: Record<string, string> | null;
  }): Promise<string> {
    const gateway =
      input.options?.[OptionKeys.requestAddressType] === OptionKeys.gatewayAddressType;
    const address = input.address || undefined;
    const shared = this.#clusterNetwork(input.poolId);
    const cluster = this.#cluster.service;
    // Multi-host networks refuse sticky pools at creation (their addresses come from blocks).
    if (
      shared === undefined &&
      !gateway &&
      address === undefined &&
      this.#state.ipam.pool(input.poolId)?.sticky
    ) {
      return this.#requestSticky(input.poolId, input.options?.[OptionKeys.endpointName]);
    }
    // Without etcd a multi-host pool hands out nothing: an address taken here alone could be
    // another host's.
    if (shared !== undefined && cluster === undefined && !gateway) {
      throw internal(
        this.#cluster.pending ??
          `vxlan.id ${shared.vni} is a multi-host network, and multi-host networks need etcd: set ETCD_ENDPOINTS`,
      );
    }
    if (shared === undefined || cluster === undefined || gateway) {
      return this.#state.commit((_state, ipam) =>
        ipam.requestAddress(input.poolId, { address, gateway }),
      );
    }
    // A multi-host network: a static address must be free on every host; automatic ones come
    // from the blocks this host claimed, and a new block is claimed only when those are full.
    if (address !== undefined)
      return this.#requestStatic(cluster, shared.vni, input.poolId, address);
    for (;;) {
      try {
        // A block etcd gives to another host (found when re-registering) serves no more here.
        const conflicted = cluster.conflictedBlocks(shared.vni);
        return await this.#state.commit((state, ipam) =>
          ipam.requestAddress(input.poolId, {
            within: this.#record(state, shared.vni).blocks.filter(
              (block) => !conflicted.includes(block),
            ),
          }),
        );
      } catch (error) {
        if (!(error instanceof SwitchyardError && error.kind === "Exhausted")) throw error;
      }
      const inFlight = this.#claiming.get(shared.vni);
      if (inFlight !== undefined) {
        await inFlight;
        continue;
      }
      const claim = this.#claimBlock(cluster, shared.vni);
      this.#claiming.set(
        shared.vni,
        claim.then(
          () => undefined,
          () => undefined,
        ),
      );
      try {
        await claim;
      } finally {
        this.#claiming.delete(shared.vni);
      }
    }
  }

  /** An automatic address in a sticky pool: the one kept for the container's name. */
  async #requestSticky(poolId: string, rawName: string | undefined): Promise<string> {
    // Docker before 29 names no container; a sticky pool is refused at creation there, so
    // this is a daemon that changed under a running plugin: never hand out an unkept address.
    if (rawName === undefined) throw stickyNeedsNames();
    const name = parseContainerName(rawName);
    const { address, takenFrom } = await this.#state.commit((_state, ipam) =>
      ipam.requestNamedAddress(poolId, name),
    );
    if (takenFrom !== undefined) {
      this.#logger?.warn(
        { poolId, name, address, takenFrom },
        "sticky pool full: gave the address kept for the least recently used name to another",
      );
    }
    return address;
  }

  /**
   * A static address on a multi-host network: held locally first (so a second request for
   * it here fails at once), then claimed in etcd; given back locally if etcd refuses it.
   */
  async #requestStatic(
    cluster: ClusterService,
    vni: number,
    poolId: string,
    address: string,
  ): Promise<string> {
    const bare = bareAddress(address);
    const result = await this.#state.commit((state, ipam) => {
      const allocated = ipam.requestAddress(poolId, { address });
      const record = this.#record(state, vni);
      record.statics = [...(record.statics ?? []), bare];
      return allocated;
    });
    try {
      await cluster.claimAddress(vni, bare);
      return result;
    } catch (error) {
      await this.#state
        .commit((state, ipam) => {
          ipam.releaseAddress(poolId, address);
          const record = this.#record(state, vni);
          record.statics = (record.statics ?? []).filter((item) => item !== bare);
        })
        .catch((undoError: unknown) =>
          this.#logger?.error({ err: undoError }, "cannot give back a refused static address"),
        );
      throw error;
    }
  }

  async #claimBlock(cluster: ClusterService, vni: number): Promise<void> {
    const record = this.#record(this.#state.document, vni);
    // With an --ip-range, only blocks that overlap it can serve automatic addresses.
    const range =
      record.poolId === undefined ? undefined : this.#state.ipam.pool(record.poolId)?.subPool;
    let block: string;
    try {
      block = await cluster.claimBlock(vni, record.subnet, record.blocks, range);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new SwitchyardError(
        error instanceof SwitchyardError ? error.kind : "Internal",
        `no free address left in this host's blocks of ${record.subnet} and no new block could be claimed: ${reason}`,
      );
    }
    await this.#state.commit((state) => {
      const current = this.#record(state, vni);
      if (!current.blocks.includes(block)) current.blocks.push(block);
    });
  }

  #record(state: { cluster?: { networks: Record<string, ClusterNetworkRecord> } }, vni: number) {
    const record = state.cluster?.networks[String(vni)];
    if (record === undefined) throw internal(`multi-host network ${vni} vanished`);
    return record;
  }

  async releaseAddress(poolId: string, address: string): Promise<void> {
    const bare = bareAddress(address);
    this.#addressNames?.forget(bare);
    // The VXLAN id when this was a static address taken cluster-wide, else undefined.
    const staticIn = await this.#state.commit((state, ipam) => {
      ipam.releaseAddress(poolId, address);
      const shared = this.#clusterNetwork(poolId);
      const record = shared === undefined ? undefined : state.cluster?.networks[String(shared.vni)];
      if (record?.statics?.includes(bare) !== true) return undefined;
      record.statics = record.statics.filter((item) => item !== bare);
      return record.vni;
    });
    const cluster = this.#cluster.service;
    if (staticIn === undefined || cluster === undefined) return;
    // A static address taken cluster-wide goes back too; if etcd is away it stays taken
    // until this host leaves the network (never handed out twice, at worst held too long).
    await cluster
      .releaseAddress(staticIn, bare)
      .catch((error: unknown) =>
        this.#logger?.warn({ err: error }, "cannot release address in etcd"),
      );
  }
}

/** `--ipam-opt sticky=BOOL`; absent is false. */
function parseSticky(value: string | undefined): boolean {
  if (value === undefined || value === "" || value === "false" || value === "0") return false;
  if (value === "true" || value === "1") return true;
  throw badRequest(`IPAM option sticky="${value}" must be true or false`);
}

/** A container name as Docker allows it (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), at most 255 bytes. */
function parseContainerName(value: string): string {
  const name = validContainerName(value);
  if (name === undefined)
    throw badRequest(
      `container name ${JSON.stringify(value)} in RequestAddress is not a valid name`,
    );
  return name;
}

/** The name without Docker's leading slash, or undefined when it is no container name. */
function validContainerName(value: string): string | undefined {
  const name = value.startsWith("/") ? value.slice(1) : value;
  return /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/.test(name) ? name : undefined;
}

function stickyNeedsNames(): SwitchyardError {
  return badRequest(
    "--ipam-opt sticky=true needs Docker 29.5 or later: releases before 29 do not tell the IPAM driver which container an address is for (no com.docker.network.endpoint.name in RequestAddress), so there is no name to keep an address for, and Switchyard recognises a Docker that does by the time namespace it starts plugins in, which 29.5 brought",
  );
}

import type { Logger } from "pino";
import type { ClusterService } from "../cluster/cluster.ts";
import type { Datapath } from "../datapath/datapath.ts";
import { badRequest, conflict, exhausted, notFound, SwitchyardError } from "../errors.ts";
import type { Firewall } from "../firewall/firewall.ts";
import type { PortPublisher } from "../proxy/port-proxy.ts";
import {
  bareAddress,
  type ClusterState,
  type EndpointRecord,
  firstGateway,
  type NetworkAddressing,
  type NetworkRecord,
  type PortBinding,
  type StateDocument,
} from "../state/model.ts";
import type { StateManager } from "../state/state-manager.ts";
import { KeyedLocks } from "./locks.ts";
import {
  bridgeNameFor,
  isDerivedBridgeName,
  isHostVethName,
  macFor,
  validateMac,
  vethNamesFor,
} from "./names.ts";
import { parseNetworkOptions } from "./options.ts";
import { bindingsClash, candidateHostPorts, describeBinding, parsePortBindings } from "./ports.ts";
import { UndoList } from "./undo.ts";
import { isVxlanDeviceName, vxlanDeviceName } from "./vxlan.ts";

/** A network as CreateNetwork describes it, after decoding. */
export interface CreateNetworkInput {
  networkId: string;
  options: Record<string, unknown> | null | undefined;
  ipv4: { pool?: string; gateway?: string }[];
  ipv6: { pool?: string; gateway?: string }[];
}

/** An endpoint as CreateEndpoint describes it, after decoding. */
export interface CreateEndpointInput {
  networkId: string;
  endpointId: string;
  address?: string;
  addressV6?: string;
  mac?: string;
  options: Record<string, unknown> | null | undefined;
}

/** What Join hands back to Docker. */
export interface JoinResult {
  srcName: string;
  gateway?: string;
  gatewayV6?: string;
  disableGatewayService: boolean;
}

function toAddressing(
  data: { pool?: string; gateway?: string }[],
  family: string,
): NetworkAddressing[] {
  return data.map((item, index) => {
    if (item.pool === undefined || item.pool === "") {
      throw badRequest(`${family} data item ${index} has no Pool`);
    }
    return item.gateway === undefined || item.gateway === ""
      ? { pool: item.pool }
      : { pool: item.pool, gateway: item.gateway };
  });
}

/** Lock keys: one per network; port and bridge-name allocation span networks. */
const networkKey = (networkId: string): string => `network:${networkId}`;
const PORTS_KEY = "ports";
const BRIDGES_KEY = "bridges";
const vxlanKey = (vni: number): string => `vxlan:${vni}`;
/** Bytes a VXLAN header adds (outer Ethernet, IP, UDP and VXLAN). */
const VXLAN_OVERHEAD = 50;

/** The network driver: keeps state, host interfaces and the packet filter in step. */
export class NetworkDriver {
  readonly #state: StateManager;
  readonly #datapath: Datapath;
  readonly #firewall: Firewall;
  readonly #logger: Logger;
  readonly #publisher: PortPublisher;
  readonly #locks = new KeyedLocks();
  readonly #cluster: ClusterService | undefined;
  /** Veth deletions still running, per network. */
  readonly #pendingDeletes = new Map<string, Set<Promise<void>>>();
  /** Latest peers seen per VXLAN id, also before the network exists here. */
  readonly #pendingPeers = new Map<number, string[]>();

  constructor(deps: {
    state: StateManager;
    datapath: Datapath;
    firewall: Firewall;
    publisher: PortPublisher;
    logger: Logger;
    cluster?: ClusterService;
  }) {
    this.#cluster = deps.cluster;
    this.#publisher = deps.publisher;
    this.#state = deps.state;
    this.#datapath = deps.datapath;
    this.#firewall = deps.firewall;
    this.#logger = deps.logger;
  }

  createNetwork(input: CreateNetworkInput): Promise<void> {
    const options = parseNetworkOptions(input.options);
    const ipv4 = toAddressing(input.ipv4, "IPv4Data");
    const ipv6 = options.enableIpv6 ? toAddressing(input.ipv6, "IPv6Data") : [];
    const vni = options.vxlanId;
    const keys = [networkKey(input.networkId), BRIDGES_KEY];
    if (vni !== undefined) keys.push(vxlanKey(vni));
    return this.#locks.run(keys, async () => {
      if (this.#state.document.networks[input.networkId] !== undefined) return; // a retry
      // Multi-host: agree with the other hosts in etcd first (outside the state lock).
      const cluster =
        vni === undefined ? undefined : await this.#joinCluster(vni, ipv4, options.mtu);
      return this.#state.change(async (state) => {
        const bridge =
          options.existingBridge ?? options.bridgeName ?? bridgeNameFor(input.networkId);
        const owner = Object.values(state.networks).find((network) => network.bridge === bridge);
        if (owner !== undefined) {
          throw conflict(`bridge "${bridge}" is already used by network ${owner.id.slice(0, 12)}`);
        }
        const existing = await this.#datapath.link(bridge);
        if (options.existingBridge !== undefined) {
          if (existing === undefined) {
            throw badRequest(
              `cannot use bridge "${bridge}": no such interface on this host; create it first (ip link add ${bridge} type bridge) or drop -o bridge= to let Switchyard make one`,
            );
          }
          if (existing.kind !== "bridge") {
            throw badRequest(
              `cannot use bridge "${bridge}": it is a ${existing.kind ?? "plain"} interface, not a bridge`,
            );
          }
        } else if (existing !== undefined) {
          throw conflict(
            `cannot create bridge "${bridge}": an interface with that name already exists; use -o bridge=${bridge} to attach to an existing bridge`,
          );
        }
        const record: NetworkRecord = {
          id: input.networkId,
          bridge,
          bridgeOwned: options.existingBridge === undefined,
          ipv4,
          ipv6,
          internal: options.internal,
          enableIpv6: options.enableIpv6,
          icc: options.icc,
          masquerade: options.masquerade,
          options: options.generic,
        };
        if (options.mtu !== undefined) record.mtu = options.mtu;
        if (options.hostBindingIpv4 !== undefined) record.hostBindingIpv4 = options.hostBindingIpv4;
        if (cluster !== undefined) {
          record.vxlanId = cluster.vni;
          record.mtu = cluster.mtu;
        }
        const undo = new UndoList(this.#logger);
        try {
          if (record.bridgeOwned) {
            await this.#ensureOwnedBridge(record);
            undo.push("delete bridge", () => this.#datapath.deleteBridge(bridge));
          }
          if (cluster !== undefined) {
            await this.#ensureVxlan(record, cluster.peers);
            undo.push("delete vxlan", () =>
              this.#datapath.deleteLink(vxlanDeviceName(cluster.vni)),
            );
            const poolId = this.#state.ipam
              .pools()
              .find((pool) => !pool.v6 && pool.pool === ipv4[0]?.pool)?.poolId;
            const clusterState = this.#clusterState(state);
            clusterState.networks[String(cluster.vni)] = {
              vni: cluster.vni,
              networkId: record.id,
              ...(poolId === undefined ? {} : { poolId }),
              subnet: cluster.subnet,
              gateway: cluster.gateway,
              blocks: [],
              peers: cluster.peers,
            };
          }
          state.networks[record.id] = record;
          await this.#firewall.apply(state);
        } catch (error) {
          delete state.networks[record.id];
          if (cluster !== undefined) delete state.cluster?.networks[String(cluster.vni)];
          await undo.rollback();
          if (cluster !== undefined) await this.#leaveCluster(cluster.vni, []);
          throw error;
        }
      });
    });
  }

  /** Checks a multi-host network against etcd and this host; what createNetwork needs next. */
  async #joinCluster(vni: number, ipv4: NetworkAddressing[], mtu: number | undefined) {
    const cluster = this.#cluster;
    if (cluster === undefined) {
      throw badRequest(
        "option vxlan.id makes a multi-host network, which needs etcd: docker plugin set switchyard:latest ETCD_ENDPOINTS=http://HOST:2379 (while disabled)",
      );
    }
    const first = ipv4[0];
    if (first?.gateway === undefined)
      throw badRequest(`a multi-host network needs an IPv4 subnet and gateway`);
    const owner = Object.values(this.#state.document.networks).find(
      (network) => network.vxlanId === vni,
    );
    if (owner !== undefined) {
      throw conflict(
        `vxlan.id ${vni} is already used by network ${owner.id.slice(0, 12)} on this host`,
      );
    }
    await cluster.joinNetwork(vni, { subnet: first.pool, gateway: first.gateway });
    // VXLAN adds 50 bytes: unless told otherwise, leave room for them under the underlay MTU.
    const underlay = (await this.#datapath.mtuOfAddress(cluster.identity.vtep)) ?? 1500;
    return {
      vni,
      subnet: first.pool,
      gateway: first.gateway,
      mtu: mtu ?? underlay - VXLAN_OVERHEAD,
      peers: this.#pendingPeers.get(vni) ?? [],
    };
  }

  async #leaveCluster(vni: number, blocks: readonly string[]): Promise<void> {
    try {
      await this.#cluster?.leaveNetwork(vni, blocks);
    } catch (error) {
      this.#logger.warn(
        { err: error, vni },
        "cannot remove this host's entries from etcd; they age out or go with the last host",
      );
    }
  }

  async #ensureVxlan(network: NetworkRecord, peers: readonly string[]): Promise<void> {
    const cluster = this.#cluster;
    if (network.vxlanId === undefined || cluster === undefined) return;
    const name = vxlanDeviceName(network.vxlanId);
    await this.#datapath.ensureVxlan({
      name,
      vni: network.vxlanId,
      local: cluster.identity.vtep,
      bridge: network.bridge,
      mtu: network.mtu,
    });
    await this.#datapath.setFloodPeers(name, peers);
  }

  /** The other hosts of a multi-host network changed (from the etcd watch). */
  updatePeers(vni: number, peers: string[]): Promise<void> {
    return this.#locks.run([vxlanKey(vni)], async () => {
      this.#pendingPeers.set(vni, peers);
      const record = this.#state.document.cluster?.networks[String(vni)];
      if (record === undefined) return;
      await this.#datapath.setFloodPeers(vxlanDeviceName(vni), peers);
      if (record.peers.join() === peers.join()) return;
      this.#logger.info({ vni, peers }, "peer hosts changed");
      await this.#state.change((state) => {
        const current = state.cluster?.networks[String(vni)];
        if (current !== undefined) current.peers = peers;
      });
    });
  }

  #clusterState(state: StateDocument): ClusterState {
    state.cluster ??= { hostId: this.#cluster?.identity.hostId ?? "", networks: {} };
    return state.cluster;
  }

  deleteNetwork(networkId: string): Promise<void> {
    const keys = [networkKey(networkId), BRIDGES_KEY, PORTS_KEY];
    return this.#locks.run(keys, () =>
      this.#state.change(async (state) => {
        const network = state.networks[networkId];
        if (network === undefined) return; // already gone: Docker may retry
        await this.#waitForDeletes(networkId);
        for (const endpoint of Object.values(state.endpoints)) {
          if (endpoint.networkId !== networkId) continue;
          await this.#publisher.close(endpoint.id);
          await this.#datapath.deleteLink(endpoint.hostVeth);
          delete state.endpoints[endpoint.id];
        }
        delete state.networks[networkId];
        const vni = network.vxlanId;
        const clusterRecord = vni === undefined ? undefined : state.cluster?.networks[String(vni)];
        if (vni !== undefined) delete state.cluster?.networks[String(vni)];
        await this.#firewall.apply(state);
        if (vni !== undefined) {
          await this.#datapath.deleteLink(vxlanDeviceName(vni));
          await this.#leaveCluster(vni, clusterRecord?.blocks ?? []);
        }
        if (network.bridgeOwned) await this.#datapath.deleteBridge(network.bridge);
      }),
    );
  }

  createEndpoint(input: CreateEndpointInput): Promise<{ mac?: string }> {
    const givenMac =
      input.mac === undefined || input.mac === "" ? undefined : validateMac(input.mac);
    // Validated here so a bad -p fails early; ports are opened in ProgramExternalConnectivity.
    parsePortBindings(input.options);
    return this.#locks.run([networkKey(input.networkId)], async () => {
      const network = this.#network(this.#state.document, input.networkId);
      if (this.#state.document.endpoints[input.endpointId] !== undefined) {
        throw conflict(`endpoint ${input.endpointId.slice(0, 12)} already exists`);
      }
      if (input.address === undefined && input.addressV6 === undefined) {
        throw badRequest(
          `endpoint ${input.endpointId.slice(0, 12)} has no address; Docker's IPAM gave none`,
        );
      }
      const mac = givenMac ?? macFor(input.endpointId, input.address);
      const { hostVeth, peerVeth } = vethNamesFor(input.endpointId);
      const record: EndpointRecord = {
        id: input.endpointId,
        networkId: network.id,
        hostVeth,
        peerVeth,
        mac,
        ports: [],
      };
      if (input.address !== undefined) record.address = input.address;
      if (input.addressV6 !== undefined) record.addressV6 = input.addressV6;
      // Host work outside the state lock, so other networks' requests run meanwhile; this
      // network's lock keeps its own requests in order. The veth is made, attached to the
      // bridge and up in one command (as Docker's bridge driver attaches at CreateEndpoint),
      // so Join and Leave need no command at all.
      const veth = {
        hostName: hostVeth,
        peerName: peerVeth,
        peerMac: mac,
        mtu: network.mtu,
        bridge: network.bridge,
      };
      try {
        await this.#datapath.ensureVeth(veth);
      } catch (error) {
        // After a host reboot the bridge may be gone and Docker replays nothing: repair it
        // (only on failure, so the usual CreateEndpoint costs one command).
        this.#logger.warn(
          { err: error, bridge: network.bridge },
          "veth create failed; repairing the bridge",
        );
        await this.#repairBridge(network);
        await this.#datapath.ensureVeth(veth);
      }
      try {
        await this.#state.change((state) => {
          state.endpoints[record.id] = record;
        });
      } catch (error) {
        await this.#datapath.deleteLink(hostVeth);
        throw error;
      }
      return givenMac === undefined ? { mac } : {};
    });
  }

  deleteEndpoint(networkId: string, endpointId: string): Promise<void> {
    return this.#locks.run([networkKey(networkId), PORTS_KEY], async () => {
      const endpoint = this.#state.document.endpoints[endpointId];
      if (endpoint === undefined || endpoint.networkId !== networkId) return;
      await this.#publisher.close(endpointId);
      await this.#state.change(async (state) => {
        const hadPorts = (state.endpoints[endpointId]?.ports.length ?? 0) > 0;
        delete state.endpoints[endpointId];
        if (hadPorts) await this.#firewall.apply(state);
      });
      // After the record is gone (a crash in between leaves a stray veth, which start-up
      // reconciliation removes, never a record without its veth), and after answering: the
      // kernel takes ~20 ms to delete a veth, which need not hold up `docker rm`.
      this.#deleteLater(networkId, endpoint.hostVeth);
    });
  }

  /** Deletes a link in the background; deleteNetwork and reconcile wait for these. */
  #deleteLater(networkId: string, link: string): void {
    const deletion = this.#datapath
      .deleteLink(link)
      .catch((error: unknown) =>
        this.#logger.warn({ err: error, link }, "cannot delete veth; start-up reconciliation will"),
      )
      .finally(() => this.#pendingDeletes.get(networkId)?.delete(deletion));
    const pending = this.#pendingDeletes.get(networkId) ?? new Set<Promise<void>>();
    pending.add(deletion);
    this.#pendingDeletes.set(networkId, pending);
  }

  async #waitForDeletes(networkId?: string): Promise<void> {
    const sets =
      networkId === undefined
        ? [...this.#pendingDeletes.values()]
        : [this.#pendingDeletes.get(networkId)];
    await Promise.all(sets.flatMap((set) => [...(set ?? [])]));
  }

  endpointInfo(networkId: string, endpointId: string): Record<string, unknown> {
    const state = this.#state.document;
    const endpoint = state.endpoints[endpointId];
    if (endpoint === undefined || endpoint.networkId !== networkId) {
      throw notFound(
        `endpoint ${endpointId.slice(0, 12)} is not known to Switchyard on network ${networkId.slice(0, 12)}`,
      );
    }
    const network = state.networks[networkId];
    return {
      bridge: network?.bridge,
      hostVeth: endpoint.hostVeth,
      mac: endpoint.mac,
      ports: endpoint.ports,
    };
  }

  /**
   * Hands Docker the container end. The veth was made and attached in CreateEndpoint, so
   * this needs neither a command nor a save: it only reads the state.
   */
  async join(networkId: string, endpointId: string): Promise<JoinResult> {
    const network = this.#network(this.#state.document, networkId);
    const endpoint = this.#endpoint(this.#state.document, networkId, endpointId);
    const result: JoinResult = { srcName: endpoint.peerVeth, disableGatewayService: false };
    // Internal networks get their gateway too, as with Docker 20.10's bridge driver: the
    // packet filter, not a missing route, keeps their traffic in.
    const gateway = firstGateway(network.ipv4);
    if (gateway !== undefined && endpoint.address !== undefined)
      result.gateway = bareAddress(gateway);
    const gatewayV6 = firstGateway(network.ipv6);
    if (gatewayV6 !== undefined && endpoint.addressV6 !== undefined) {
      result.gatewayV6 = bareAddress(gatewayV6);
    }
    // Without a gateway Docker would add the container to docker_gwbridge too.
    result.disableGatewayService = result.gateway === undefined && result.gatewayV6 === undefined;
    return result;
  }

  /**
   * Docker moves the container end back to the host itself; DeleteEndpoint, which always
   * follows, removes the pair. As with Docker's bridge driver there is nothing to do here.
   */
  async leave(_networkId: string, _endpointId: string): Promise<void> {}

  /** Publishes the endpoint's ports (`-p`): host ports chosen and held, DNAT rules applied. */
  programExternalConnectivity(
    networkId: string,
    endpointId: string,
    options: Record<string, unknown> | null | undefined,
  ): Promise<void> {
    const requested = parsePortBindings(options);
    // Nothing to publish (no -p): answer at once, without queueing behind other work.
    if (requested.length === 0 && this.#state.document.endpoints[endpointId]?.ports.length === 0) {
      return Promise.resolve();
    }
    const keys = [networkKey(networkId), PORTS_KEY];
    return this.#locks.run(keys, () =>
      this.#state.change(async (state) => {
        const network = this.#network(state, networkId);
        const endpoint = this.#endpoint(state, networkId, endpointId);
        // Internal networks publish nothing, as with Docker's bridge; a retry changes nothing.
        if (network.internal || endpoint.address === undefined || endpoint.ports.length > 0) return;
        const target = bareAddress(endpoint.address);
        const resolved: PortBinding[] = [];
        try {
          for (const binding of requested) {
            const wanted = { ...binding, hostIp: binding.hostIp || network.hostBindingIpv4 || "" };
            resolved.push(await this.#publishOne(state, endpointId, wanted, target, resolved));
          }
          endpoint.ports = resolved;
          await this.#firewall.apply(state);
        } catch (error) {
          endpoint.ports = [];
          await this.#publisher.close(endpointId);
          throw error;
        }
      }),
    );
  }

  revokeExternalConnectivity(networkId: string, endpointId: string): Promise<void> {
    if (this.#state.document.endpoints[endpointId]?.ports.length === 0) return Promise.resolve();
    const keys = [networkKey(networkId), PORTS_KEY];
    return this.#locks.run(keys, () =>
      this.#state.change(async (state) => {
        const endpoint = state.endpoints[endpointId];
        if (endpoint === undefined || endpoint.networkId !== networkId) return;
        await this.#publisher.close(endpointId);
        if (endpoint.ports.length === 0) return;
        endpoint.ports = [];
        await this.#firewall.apply(state);
      }),
    );
  }

  /** Re-opens the host side of every published port, after a plugin restart. */
  async restorePublishedPorts(): Promise<void> {
    for (const endpoint of Object.values(this.#state.document.endpoints)) {
      if (endpoint.address === undefined) continue;
      for (const binding of endpoint.ports) {
        try {
          await this.#publisher.open(endpoint.id, binding, {
            address: bareAddress(endpoint.address),
            port: binding.containerPort,
          });
        } catch (error) {
          this.#logger.error(
            { err: error, endpoint: endpoint.id, binding: describeBinding(binding) },
            "cannot re-open published port",
          );
        }
      }
    }
  }

  /** Picks the host port for one binding (the one asked for, or a free one in its range). */
  async #publishOne(
    state: StateDocument,
    endpointId: string,
    wanted: PortBinding,
    target: string,
    alreadyResolved: PortBinding[],
  ): Promise<PortBinding> {
    const candidates = candidateHostPorts(wanted);
    const single = candidates.length === 1;
    for (const port of candidates) {
      const binding = { ...wanted, hostPort: port, hostPortEnd: port };
      const holder = Object.values(state.endpoints).find(
        (other) =>
          other.id !== endpointId && other.ports.some((taken) => bindingsClash(taken, binding)),
      );
      if (holder !== undefined) {
        if (!single) continue;
        const holderNetwork = holder.networkId.slice(0, 12);
        throw conflict(
          `cannot publish ${describeBinding(binding)}: host port ${port}/${binding.proto} is already published by the container at ${holder.address === undefined ? "(no IPv4)" : bareAddress(holder.address)} on network ${holderNetwork} (endpoint ${holder.id.slice(0, 12)}; see docker network inspect ${holderNetwork})`,
        );
      }
      if (alreadyResolved.some((taken) => bindingsClash(taken, binding))) {
        if (!single) continue;
        throw conflict(`cannot publish ${describeBinding(binding)} twice for one container`);
      }
      try {
        await this.#publisher.open(endpointId, binding, {
          address: target,
          port: binding.containerPort,
        });
        return binding;
      } catch (error) {
        if (single || !(error instanceof SwitchyardError && error.kind === "Conflict")) throw error;
      }
    }
    throw exhausted(
      `cannot publish ${describeBinding(wanted)}: no free host port in ${candidates[0]}-${candidates.at(-1)}`,
    );
  }

  /** Multi-host networks this host is part of, to re-join in etcd after a restart. */
  clusterNetworks(): { vni: number; config: { subnet: string; gateway: string } }[] {
    return Object.values(this.#state.document.cluster?.networks ?? {}).map((network) => ({
      vni: network.vni,
      config: { subnet: network.subnet, gateway: network.gateway },
    }));
  }

  /** Everything the driver knows, for the status view: networks, endpoints, published ports. */
  status(): Record<string, unknown> {
    const state = this.#state.document;
    const endpoints = Object.values(state.endpoints);
    return {
      networks: Object.values(state.networks).map((network) => ({
        id: network.id,
        bridge: network.bridge,
        bridgeMadeBySwitchyard: network.bridgeOwned,
        subnets: [...network.ipv4, ...network.ipv6].map((item) => item.pool),
        gateways: [...network.ipv4, ...network.ipv6].flatMap((item) =>
          item.gateway === undefined ? [] : [item.gateway],
        ),
        internal: network.internal,
        icc: network.icc,
        masquerade: network.masquerade,
        ...(network.mtu === undefined ? {} : { mtu: network.mtu }),
        options: network.options,
        endpoints: endpoints
          .filter((endpoint) => endpoint.networkId === network.id)
          .map((endpoint) => ({
            id: endpoint.id,
            address: endpoint.address,
            addressV6: endpoint.addressV6,
            mac: endpoint.mac,
            hostVeth: endpoint.hostVeth,
            ports: endpoint.ports.map(describeBinding),
          })),
      })),
      publishedPorts: endpoints.flatMap((endpoint) =>
        endpoint.ports.map((binding) => ({
          port: describeBinding(binding),
          container: endpoint.address === undefined ? undefined : bareAddress(endpoint.address),
          network: endpoint.networkId,
          endpoint: endpoint.id,
        })),
      ),
    };
  }

  /**
   * Brings the host in line with the state at start-up, logging every repair: re-creates
   * Switchyard's bridges and their addresses (a reboot or a person removed them), reports
   * vanished user bridges (never re-created as something else), deletes Switchyard veths and
   * bridges that belong to no known endpoint or network, and rebuilds the packet filter.
   */
  reconcile(): Promise<string[]> {
    return this.#locks.exclusive(() =>
      this.#state.change(async (state) => {
        await this.#waitForDeletes();
        const repairs: string[] = [];
        const links = new Map((await this.#datapath.links()).map((link) => [link.name, link]));
        for (const network of Object.values(state.networks)) {
          const link = links.get(network.bridge);
          if (network.bridgeOwned) {
            if (link === undefined) repairs.push(`re-created bridge ${network.bridge}`);
            await this.#ensureOwnedBridge(network);
          } else if (link?.kind !== "bridge") {
            const problem = `bridge "${network.bridge}" of network ${network.id.slice(0, 12)} no longer exists on this host; re-create it (Switchyard does not make bridges it was told to use)`;
            this.#logger.error({ network: network.id, bridge: network.bridge }, problem);
            repairs.push(problem);
          }
        }
        for (const network of Object.values(state.networks)) {
          if (network.vxlanId === undefined) continue;
          if (!links.has(vxlanDeviceName(network.vxlanId)))
            repairs.push(`re-created VXLAN device ${vxlanDeviceName(network.vxlanId)}`);
          await this.#ensureVxlan(
            network,
            state.cluster?.networks[String(network.vxlanId)]?.peers ?? [],
          );
        }
        // Running containers whose bridge was re-created: put their veths back on it.
        for (const endpoint of Object.values(state.endpoints)) {
          const network = state.networks[endpoint.networkId];
          const veth = links.get(endpoint.hostVeth);
          if (network === undefined || veth === undefined) continue;
          if (
            veth.master === network.bridge ||
            (await this.#datapath.link(network.bridge)) === undefined
          )
            continue;
          await this.#datapath.attach(endpoint.hostVeth, network.bridge);
          repairs.push(`re-attached ${endpoint.hostVeth} to ${network.bridge}`);
        }
        const knownVeths = new Set(
          Object.values(state.endpoints).map((endpoint) => endpoint.hostVeth),
        );
        const knownBridges = new Set(
          Object.values(state.networks).map((network) => network.bridge),
        );
        const knownVxlans = new Set(
          Object.values(state.networks).flatMap((network) =>
            network.vxlanId === undefined ? [] : [vxlanDeviceName(network.vxlanId)],
          ),
        );
        const hasPorts = (bridge: string): boolean =>
          [...links.values()].some(
            (link) => link.master === bridge && !isVxlanDeviceName(link.name),
          );
        for (const link of links.values()) {
          const veth = isHostVethName(link.name);
          const bridge = link.kind === "bridge" && isDerivedBridgeName(link.name);
          const vxlan = isVxlanDeviceName(link.name);
          if (!(veth || bridge || vxlan)) continue;
          if (
            knownVeths.has(link.name) ||
            knownBridges.has(link.name) ||
            knownVxlans.has(link.name)
          ) {
            continue;
          }
          // Only leftovers are removed: a veth detached or on one of our bridges, a bridge or
          // VXLAN device with no container on it. Something in use that this state does not
          // know (another Switchyard, or a wrong state directory) is left alone.
          const leftover = veth
            ? link.master === undefined || knownBridges.has(link.master)
            : bridge
              ? !hasPorts(link.name)
              : link.master === undefined || !hasPorts(link.master);
          if (!leftover) {
            this.#logger.warn(
              { link: link.name },
              "a Switchyard-named interface this state does not know is in use; leaving it alone",
            );
            continue;
          }
          await this.#datapath.deleteLink(link.name);
          const kind = veth ? "veth" : vxlan ? "VXLAN device" : "bridge";
          repairs.push(`removed stray ${kind} ${link.name}`);
        }
        await this.#firewall.apply(state);
        for (const repair of repairs) this.#logger.warn({ repair }, "reconciled");
        return repairs;
      }),
    );
  }

  /** Re-creates an owned bridge; a vanished user bridge is an error naming it. */
  async #repairBridge(network: NetworkRecord): Promise<void> {
    if (network.bridgeOwned) {
      await this.#ensureOwnedBridge(network);
      await this.#ensureVxlan(
        network,
        this.#state.document.cluster?.networks[String(network.vxlanId)]?.peers ?? [],
      );
    } else if ((await this.#datapath.link(network.bridge))?.kind !== "bridge") {
      throw notFound(
        `cannot attach to network ${network.id.slice(0, 12)}: its bridge "${network.bridge}" no longer exists on this host; re-create it`,
      );
    }
  }

  async #ensureOwnedBridge(network: NetworkRecord): Promise<void> {
    const addresses = [...network.ipv4, ...network.ipv6]
      .map((item) => item.gateway)
      .filter((gateway): gateway is string => gateway !== undefined);
    // Every host of a multi-host network gives its bridge the same gateway MAC (as well as
    // the same gateway address), so a container sees one gateway wherever it runs.
    const gateway = firstGateway(network.ipv4);
    const mac =
      network.vxlanId !== undefined && gateway !== undefined
        ? macFor(network.id, gateway)
        : undefined;
    await this.#datapath.ensureBridge({
      name: network.bridge,
      addresses,
      mtu: network.mtu,
      ...(mac === undefined ? {} : { mac }),
    });
  }

  #network(state: StateDocument, networkId: string): NetworkRecord {
    const network = state.networks[networkId];
    if (network === undefined) {
      throw notFound(`network ${networkId.slice(0, 12)} is not known to Switchyard`);
    }
    return network;
  }

  #endpoint(state: StateDocument, networkId: string, endpointId: string): EndpointRecord {
    const endpoint = state.endpoints[endpointId];
    if (endpoint === undefined || endpoint.networkId !== networkId) {
      throw notFound(
        `endpoint ${endpointId.slice(0, 12)} is not known to Switchyard on network ${networkId.slice(0, 12)}`,
      );
    }
    return endpoint;
  }
}

import { badRequest, conflict } from "../errors.ts";
import { inPacketFilter } from "../firewall/sync.ts";
import { formatPrefix, networkOf, parseAddress } from "../ipam/prefix.ts";
import { macFor, vethNamesFor } from "../names.ts";
import {
  bareAddress,
  type EndpointRecord,
  firstGateway,
  type NetworkRecord,
  type StateDocument,
} from "../state/model.ts";
import {
  type DriverContext,
  findEndpoint,
  findNetwork,
  lookupEndpoint,
  networkKey,
  PORTS_KEY,
} from "./context.ts";
import type { Networks } from "./networks.ts";

/** An endpoint as CreateEndpoint describes it, decoded into typed, validated values. */
export interface CreateEndpointInput {
  networkId: string;
  endpointId: string;
  /** Address with prefix length, canonical. */
  address?: string;
  addressV6?: string;
  /** Normalised unicast MAC, when Docker gave one. */
  mac?: string;
}

/** What Join hands back to Docker. */
export interface JoinResult {
  srcName: string;
  gateway?: string;
  gatewayV6?: string;
  disableGatewayService: boolean;
  /** Routes through a next hop (multi-host networks: the way to the name resolver). */
  routes?: { destination: string; nextHop: string }[];
}

/**
 * Prefix lengths of the route to the name resolver, longest first: each multi-host network of
 * one container gets a different one, as Docker fails a Join whose route the container has.
 */
const RESOLVER_ROUTE_LENGTHS = [32, 31, 30, 29, 28, 27, 26, 25, 24];

/** Endpoints: the veth pair of a container on a network. */
export class Endpoints {
  readonly #context: DriverContext;
  readonly #networks: Networks;

  constructor(context: DriverContext, networks: Networks) {
    this.#context = context;
    this.#networks = networks;
  }

  /**
   * CreateEndpoint: the veth is made, attached to the bridge and up in one command (as
   * Docker's bridge driver attaches here), so Join and Leave need no command; then the record
   * is committed, and the veth deleted again if that fails.
   */
  create(input: CreateEndpointInput): Promise<{ mac?: string }> {
    return this.#context.locks.run([networkKey(input.networkId)], async () => {
      const document = this.#context.state.document;
      const network = findNetwork(document, input.networkId);
      if (document.endpoints[input.endpointId] !== undefined) {
        throw conflict(`endpoint ${input.endpointId.slice(0, 12)} already exists`);
      }
      if (input.address === undefined && input.addressV6 === undefined) {
        throw badRequest(
          `endpoint ${input.endpointId.slice(0, 12)} has no address; Docker's IPAM gave none`,
        );
      }
      const mac = input.mac ?? macFor(input.endpointId, input.address);
      const { hostVeth, peerVeth } = vethNamesFor(input.endpointId);
      const endpoint: EndpointRecord = {
        id: input.endpointId,
        networkId: network.id,
        hostVeth,
        peerVeth,
        mac,
        ports: [],
      };
      if (input.address !== undefined) endpoint.address = input.address;
      if (input.addressV6 !== undefined) endpoint.addressV6 = input.addressV6;
      const name = this.#context.addressNames?.take(
        input.address === undefined ? undefined : bareAddress(input.address),
        input.addressV6 === undefined ? undefined : bareAddress(input.addressV6),
      );
      if (name !== undefined) endpoint.name = name;
      const veth = {
        hostName: hostVeth,
        peerName: peerVeth,
        peerMac: mac,
        mtu: network.mtu,
        bridge: network.bridge,
      };
      const { datapath, logger } = this.#context;
      try {
        await datapath.ensureVeth(veth);
      } catch (error) {
        // After a host reboot the bridge may be gone and Docker replays nothing: repair it
        // (only on failure, so the usual CreateEndpoint costs one command).
        logger.warn(
          { err: error, bridge: network.bridge },
          "veth create failed; repairing the bridge",
        );
        await this.#networks.repairBridge(network.id);
        await datapath.ensureVeth(veth);
      }
      const add = (state: StateDocument): void => {
        findNetwork(state, network.id);
        state.endpoints[endpoint.id] = endpoint;
      };
      const commit = () => this.#context.state.commit(add);
      try {
        if (inPacketFilter(document, endpoint)) await this.#context.firewall.around(add, commit);
        else await commit();
      } catch (error) {
        await datapath.deleteLink(hostVeth);
        throw error;
      }
      this.#namesChanged(network.id);
      return input.mac === undefined ? { mac } : {};
    });
  }

  /**
   * DeleteEndpoint: the record goes first (a crash in between leaves a stray veth, which
   * reconciliation removes, never a record without its veth); published ports are closed,
   * relayed connections cut, and the veth deleted after answering (the kernel takes ~20 ms).
   */
  delete(networkId: string, endpointId: string): Promise<void> {
    const hadPorts = (this.#context.state.document.endpoints[endpointId]?.ports.length ?? 0) > 0;
    const keys = hadPorts ? [networkKey(networkId), PORTS_KEY] : [networkKey(networkId)];
    return this.#context.locks.run(keys, async () => {
      const endpoint = lookupEndpoint(this.#context.state.document, networkId, endpointId);
      if (endpoint === undefined) return; // already gone: Docker may retry
      await this.forget(endpoint);
      this.#namesChanged(networkId);
      this.#context.deletions.add(
        networkId,
        endpoint.hostVeth,
        this.#context.datapath.deleteLink(endpoint.hostVeth),
      );
    });
  }

  /**
   * An endpoint of a multi-host network came or went: the names this host publishes are
   * derived again (the cluster retries until etcd agrees), so they appear and stop resolving
   * on other hosts at once.
   */
  #namesChanged(networkId: string): void {
    if (this.#context.state.document.networks[networkId]?.vxlanId === undefined) return;
    this.#context.names?.endpointsChanged();
  }

  /** Drops an endpoint's record and its published ports (the caller holds its locks). */
  async forget(endpoint: EndpointRecord): Promise<void> {
    const remove = (state: StateDocument): void => {
      delete state.endpoints[endpoint.id];
    };
    const commit = () => this.#context.state.commit(remove);
    if (inPacketFilter(this.#context.state.document, endpoint))
      await this.#context.firewall.around(remove, commit);
    else await commit();
    await this.#context.publisher.close(endpoint.id);
  }

  /**
   * Gives an endpoint's addresses back to the IPAM, for when Docker could not (it dropped the
   * container while the plugin was away). Only a pool that is unambiguously the network's is
   * touched: two pools of the same subnet (in different address spaces) are left alone.
   */
  async releaseAddresses(network: NetworkRecord, endpoint: EndpointRecord): Promise<void> {
    await this.#context.state.commit((_state, ipam) => {
      for (const [address, addressing] of [
        [endpoint.address, network.ipv4],
        [endpoint.addressV6, network.ipv6],
      ] as const) {
        if (address === undefined) continue;
        const subnets = new Set(addressing.map((item) => item.pool));
        const pools = ipam.pools().filter((pool) => subnets.has(pool.pool));
        const [only] = pools;
        if (only === undefined || pools.length > 1) {
          this.#context.logger.warn(
            { address },
            "cannot tell which pool to give an address back to",
          );
          continue;
        }
        ipam.releaseAddress(only.poolId, address);
      }
    });
  }

  /**
   * Join hands Docker the container end. On a multi-host network with the name resolver on, it
   * also gives a route to the resolver through the network's gateway (internal networks have
   * no default route), and records the container's sandbox to keep that route apart from
   * the ones its other multi-host networks give.
   */
  async join(networkId: string, endpointId: string, sandbox?: string): Promise<JoinResult> {
    const document = this.#context.state.document;
    const network = findNetwork(document, networkId);
    const endpoint = findEndpoint(document, networkId, endpointId);
    const result: JoinResult = { srcName: endpoint.peerVeth, disableGatewayService: false };
    // Internal networks get no default route, as with Docker 26 and later (20.10 gave one):
    // nothing but the network itself is reachable from them anyway.
    const gateway = firstGateway(network.ipv4);
    if (!network.internal && gateway !== undefined && endpoint.address !== undefined)
      result.gateway = bareAddress(gateway);
    const gatewayV6 = firstGateway(network.ipv6);
    if (!network.internal && gatewayV6 !== undefined && endpoint.addressV6 !== undefined)
      result.gatewayV6 = bareAddress(gatewayV6);
    // Without a gateway Docker would add the container to docker_gwbridge too.
    result.disableGatewayService =
      network.internal || (result.gateway === undefined && result.gatewayV6 === undefined);
    const resolver = this.#context.resolverAddress;
    if (
      network.vxlanId === undefined ||
      resolver === undefined ||
      gateway === undefined ||
      endpoint.address === undefined
    )
      return result;
    // The lengths the container's other multi-host networks gave (none known without a sandbox).
    const taken = new Set(
      sandbox === undefined
        ? []
        : Object.values(document.endpoints)
            .filter((other) => other.sandbox === sandbox && other.id !== endpointId)
            .map((other) => other.resolverRoute),
    );
    const length = RESOLVER_ROUTE_LENGTHS.find((candidate) => !taken.has(candidate));
    if (length === undefined) {
      this.#context.logger.warn(
        { endpoint: endpointId.slice(0, 12) },
        "this container is on too many multi-host networks for one more route to the name resolver",
      );
      return result;
    }
    if (endpoint.sandbox !== sandbox || endpoint.resolverRoute !== length) {
      await this.#context.state.commit((state) => {
        const current = state.endpoints[endpointId];
        if (current === undefined) return;
        if (sandbox === undefined) delete current.sandbox;
        else current.sandbox = sandbox;
        current.resolverRoute = length;
      });
    }
    const destination = networkOf({ v6: false, address: parseAddress(resolver).value, length });
    result.routes = [{ destination: formatPrefix(destination), nextHop: bareAddress(gateway) }];
    return result;
  }

  /** What EndpointOperInfo reports. */
  info(networkId: string, endpointId: string): Record<string, unknown> {
    const document = this.#context.state.document;
    const endpoint = findEndpoint(document, networkId, endpointId);
    return {
      bridge: document.networks[networkId]?.bridge,
      hostVeth: endpoint.hostVeth,
      mac: endpoint.mac,
      ports: endpoint.ports,
    };
  }
}

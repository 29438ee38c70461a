import { badRequest, conflict, notFound } from "../errors.ts";
import { bridgeNameFor, macFor, vxlanDeviceName } from "../names.ts";
import {
  firstGateway,
  type NetworkAddressing,
  type NetworkRecord,
  type StateDocument,
} from "../state/model.ts";
import { type DriverContext, endpointsOf, findNetwork, networkKey, PORTS_KEY } from "./context.ts";
import type { NetworkOptions } from "./options.ts";
import { type Overlay, type OverlayJoin, vxlanKey } from "./overlay.ts";
import { UndoList } from "./undo.ts";

/** A network as CreateNetwork describes it, decoded into typed, validated values. */
export interface CreateNetworkInput {
  networkId: string;
  options: NetworkOptions;
  ipv4: NetworkAddressing[];
  ipv6: NetworkAddressing[];
}

/** One step of setting up a network on the host, run only when it applies (as libnetwork's). */
interface SetupStep {
  what: string;
  applies: (network: NetworkRecord) => boolean;
  /** Does the step; returns how to undo it, if anything needs undoing. */
  run: (network: NetworkRecord) => Promise<(() => Promise<void>) | undefined>;
}

/** Creating and deleting networks: their bridge, VXLAN device and packet filter. */
export class Networks {
  readonly #context: DriverContext;
  readonly #overlay: Overlay;
  /** Bridge names of networks being created right now (claimed before any host work). */
  readonly #claimedBridges = new Set<string>();
  readonly #steps: SetupStep[];

  constructor(context: DriverContext, overlay: Overlay) {
    this.#context = context;
    this.#overlay = overlay;
    this.#steps = [
      {
        what: "check the bridge",
        applies: () => true,
        run: async (network) => {
          await this.#checkBridge(network);
          return undefined;
        },
      },
      {
        what: "create the bridge",
        applies: (network) => network.bridgeOwned,
        run: async (network) => {
          await this.ensureOwnedBridge(network);
          return () => this.#context.datapath.deleteBridge(network.bridge);
        },
      },
      {
        what: "create the VXLAN device",
        applies: (network) => network.vxlanId !== undefined,
        run: async (network) => {
          const peers = this.#overlay.peersOf(this.#context.state.document, network.vxlanId);
          await this.#overlay.ensureDevice(network, peers);
          return () => this.#context.datapath.deleteLink(vxlanDeviceName(network.vxlanId ?? 0));
        },
      },
    ];
  }

  /** CreateNetwork: plan the record, set up the host with undo, then commit. */
  create(input: CreateNetworkInput): Promise<void> {
    const options = input.options;
    const bridge = options.existingBridge ?? options.bridgeName ?? bridgeNameFor(input.networkId);
    const keys = [networkKey(input.networkId)];
    if (options.vxlanId !== undefined) keys.push(vxlanKey(options.vxlanId));
    return this.#context.locks.run(keys, async () => {
      if (this.#context.state.document.networks[input.networkId] !== undefined) return; // a retry
      this.#claimBridge(bridge);
      const undo = new UndoList(this.#context.logger);
      let join: OverlayJoin | undefined;
      try {
        const vni = options.vxlanId;
        if (vni !== undefined) {
          join = await this.#overlay.join(vni, input.ipv4, options.mtu, options.enableIpv6);
          undo.push("leave the multi-host network", () => this.#overlay.leave(vni));
        }
        const network = planNetwork(input, bridge, join);
        for (const step of this.#steps) {
          if (!step.applies(network)) continue;
          const reverse = await step.run(network);
          if (reverse !== undefined) undo.push(step.what, reverse);
        }
        const settled = join;
        const add = (state: StateDocument): void => {
          if (state.networks[network.id] !== undefined)
            throw conflict(`network ${network.id.slice(0, 12)} exists`);
          state.networks[network.id] = network;
          if (settled !== undefined) this.#overlay.record(state, network.id, settled);
        };
        await this.#context.firewall.around(add, () => this.#context.state.commit(add));
      } catch (error) {
        await undo.rollback();
        throw error;
      } finally {
        this.#claimedBridges.delete(bridge);
        if (join !== undefined) this.#overlay.joined(join.vni);
      }
    });
  }

  /**
   * DeleteNetwork: the record goes first (a crash after it leaves only strays, which start-up
   * reconciliation removes), then the host's interfaces and the cluster membership.
   */
  delete(networkId: string): Promise<void> {
    const known = this.#context.state.document.networks[networkId];
    const hasPorts =
      known !== undefined &&
      endpointsOf(this.#context.state.document, networkId).some((e) => e.ports.length > 0);
    const keys = hasPorts ? [networkKey(networkId), PORTS_KEY] : [networkKey(networkId)];
    return this.#context.locks.run(keys, async () => {
      const network = this.#context.state.document.networks[networkId];
      if (network === undefined) return; // already gone: Docker may retry
      await this.#context.deletions.settled(networkId);
      const endpoints = endpointsOf(this.#context.state.document, networkId);
      const vni = network.vxlanId;
      const remove = (state: StateDocument): void => {
        for (const endpoint of endpointsOf(state, networkId)) delete state.endpoints[endpoint.id];
        delete state.networks[networkId];
        if (vni !== undefined) delete state.cluster?.networks[String(vni)];
      };
      await this.#context.firewall.around(remove, () => this.#context.state.commit(remove));
      const { datapath, publisher } = this.#context;
      for (const endpoint of endpoints) {
        await publisher.close(endpoint.id);
        await this.#cleanup(`delete ${endpoint.hostVeth}`, datapath.deleteLink(endpoint.hostVeth));
      }
      if (vni !== undefined) {
        await this.#cleanup("delete the VXLAN device", datapath.deleteLink(vxlanDeviceName(vni)));
        await this.#overlay.leave(vni);
      }
      if (network.bridgeOwned)
        await this.#cleanup("delete the bridge", datapath.deleteBridge(network.bridge));
    });
  }

  /**
   * Creates (or repairs) a bridge Switchyard owns. Its MAC is fixed at creation, as Docker's
   * bridge driver does: otherwise the kernel gives the bridge its lowest port's MAC, and the
   * gateway's MAC changes under running containers when that container goes.
   */
  async ensureOwnedBridge(network: NetworkRecord): Promise<void> {
    const addresses = [...network.ipv4, ...network.ipv6]
      .map((item) => item.gateway)
      .filter((gateway): gateway is string => gateway !== undefined);
    await this.#context.datapath.ensureBridge({
      name: network.bridge,
      addresses,
      mtu: network.mtu,
      mac: gatewayMac(network),
    });
  }

  /** After a failed veth create: re-creates an owned bridge; a vanished user bridge is NotFound. */
  async repairBridge(networkId: string): Promise<void> {
    const network = findNetwork(this.#context.state.document, networkId);
    if (network.bridgeOwned) {
      await this.ensureOwnedBridge(network);
      const peers = this.#overlay.peersOf(this.#context.state.document, network.vxlanId);
      await this.#overlay.ensureDevice(network, peers);
      return;
    }
    if ((await this.#context.datapath.link(network.bridge))?.kind !== "bridge") {
      throw notFound(
        `cannot attach to network ${network.id.slice(0, 12)}: its bridge "${network.bridge}" no longer exists on this host; re-create it`,
      );
    }
  }

  #claimBridge(bridge: string): void {
    const owner = Object.values(this.#context.state.document.networks).find(
      (network) => network.bridge === bridge,
    );
    if (owner !== undefined || this.#claimedBridges.has(bridge)) {
      throw conflict(
        `bridge "${bridge}" is already used by network ${owner?.id.slice(0, 12) ?? "(being created)"}`,
      );
    }
    this.#claimedBridges.add(bridge);
  }

  async #checkBridge(network: NetworkRecord): Promise<void> {
    const bridge = network.bridge;
    const existing = await this.#context.datapath.link(bridge);
    if (!network.bridgeOwned) {
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
  }

  async #cleanup(what: string, work: Promise<void>): Promise<void> {
    try {
      await work;
    } catch (error) {
      this.#context.logger.warn(
        { err: error, step: what },
        "cleanup failed; reconciliation will retry",
      );
    }
  }
}

/** The record of a new network (pure). */
function planNetwork(
  input: CreateNetworkInput,
  bridge: string,
  join: OverlayJoin | undefined,
): NetworkRecord {
  const options = input.options;
  const network: NetworkRecord = {
    id: input.networkId,
    bridge,
    bridgeOwned: options.existingBridge === undefined,
    ipv4: input.ipv4,
    ipv6: options.enableIpv6 ? input.ipv6 : [],
    internal: options.internal,
    enableIpv6: options.enableIpv6,
    icc: options.icc,
    masquerade: options.masquerade,
    options: options.generic,
  };
  if (options.mtu !== undefined) network.mtu = options.mtu;
  if (options.hostBindingIpv4 !== undefined) network.hostBindingIpv4 = options.hostBindingIpv4;
  if (join !== undefined) {
    network.vxlanId = join.vni;
    network.mtu = join.mtu;
  }
  return network;
}

/**
 * The MAC of a network's gateway: derived from the network and its gateway, so it is the same
 * after a re-creation and on every host of a multi-host network.
 */
export function gatewayMac(network: NetworkRecord): string {
  return macFor(network.id, firstGateway(network.ipv4));
}

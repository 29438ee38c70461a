import type { Logger } from "pino";
import type { Datapath } from "../datapath/datapath.ts";
import { notFound } from "../errors.ts";
import type { FirewallSync } from "../firewall/sync.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { PortPublisher } from "../proxy/port-proxy.ts";
import type { EndpointRecord, NetworkRecord, StateDocument } from "../state/model.ts";
import type { StateManager } from "../state/state-manager.ts";
import type { AddressNames } from "./address-names.ts";
import type { ClusterLink } from "./cluster-link.ts";
import type { KeyedLocks } from "./locks.ts";

/** What every part of the network driver works with. */
export interface DriverContext {
  state: StateManager;
  datapath: Datapath;
  firewall: FirewallSync;
  publisher: PortPublisher;
  logger: Logger;
  locks: KeyedLocks;
  /** The multi-host side: absent, not up yet (and why), or up; shared with the IPAM driver. */
  cluster: ClusterLink;
  /** Veth deletions still running after their DeleteEndpoint was answered. */
  deletions: PendingDeletions;
  metrics: Metrics;
  /** The address of the multi-host name resolver, when it runs (Join routes containers to it). */
  resolverAddress?: string;
  /** Container names sent with RequestAddress, given to the endpoint with that address. */
  addressNames?: AddressNames;
  /** Names across hosts, told when an endpoint of a multi-host network comes or goes. */
  names?: { endpointsChanged(): void };
}

/** Lock key of one network: its requests run one at a time, other networks' beside them. */
export const networkKey = (networkId: string): string => `network:${networkId}`;
/** Lock key of host ports: taken only by calls that publish or release published ports. */
export const PORTS_KEY = "ports";

/** The network with that ID, or NotFound. */
export function findNetwork(state: Readonly<StateDocument>, networkId: string): NetworkRecord {
  const network = state.networks[networkId];
  if (network === undefined) {
    throw notFound(`network ${networkId.slice(0, 12)} is not known to Switchyard`);
  }
  return network;
}

/** The endpoint with that ID on that network, if Switchyard knows it. */
export function lookupEndpoint(
  state: Readonly<StateDocument>,
  networkId: string,
  endpointId: string,
): EndpointRecord | undefined {
  const endpoint = state.endpoints[endpointId];
  return endpoint?.networkId === networkId ? endpoint : undefined;
}

/** The endpoint with that ID on that network, or NotFound. */
export function findEndpoint(
  state: Readonly<StateDocument>,
  networkId: string,
  endpointId: string,
): EndpointRecord {
  const endpoint = lookupEndpoint(state, networkId, endpointId);
  if (endpoint === undefined) {
    throw notFound(
      `endpoint ${endpointId.slice(0, 12)} is not known to Switchyard on network ${networkId.slice(0, 12)}`,
    );
  }
  return endpoint;
}

/** The endpoints of one network. */
export const endpointsOf = (state: Readonly<StateDocument>, networkId: string): EndpointRecord[] =>
  Object.values(state.endpoints).filter((endpoint) => endpoint.networkId === networkId);

/** Link deletions that run after answering, per network; network deletion waits for them. */
export class PendingDeletions {
  readonly #pending = new Map<string, Set<Promise<void>>>();
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Deletes a link in the background; a failure is logged and left to reconciliation. */
  add(networkId: string, what: string, deletion: Promise<void>): void {
    const tracked = deletion
      .catch((error: unknown) =>
        this.#logger.warn({ err: error, link: what }, "cannot delete link; reconciliation will"),
      )
      .finally(() => this.#pending.get(networkId)?.delete(tracked));
    const set = this.#pending.get(networkId) ?? new Set<Promise<void>>();
    set.add(tracked);
    this.#pending.set(networkId, set);
  }

  /** Waits for the deletions of one network, or of all. */
  async settled(networkId?: string): Promise<void> {
    const sets =
      networkId === undefined ? [...this.#pending.values()] : [this.#pending.get(networkId)];
    await Promise.all(sets.flatMap((set) => [...(set ?? [])]));
  }
}

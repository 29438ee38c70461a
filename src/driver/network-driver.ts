import type { Logger } from "pino";
import type { ClusterService } from "../cluster/cluster.ts";
import type { Datapath } from "../datapath/datapath.ts";
import type { Firewall } from "../firewall/firewall.ts";
import { FirewallSync } from "../firewall/sync.ts";
import { Metrics } from "../metrics/metrics.ts";
import type { PortPublisher } from "../proxy/port-proxy.ts";
import type { PortBinding } from "../state/model.ts";
import type { StateManager } from "../state/state-manager.ts";
import type { AddressNames } from "./address-names.ts";
import { ClusterLink } from "./cluster-link.ts";
import { type DriverContext, PendingDeletions } from "./context.ts";
import { type CreateEndpointInput, Endpoints, type JoinResult } from "./endpoints.ts";
import { KeyedLocks } from "./locks.ts";
import { type CreateNetworkInput, Networks } from "./networks.ts";
import { Overlay } from "./overlay.ts";
import { Publishing } from "./publishing.ts";
import { Reconciler } from "./reconcile.ts";

export type { CreateEndpointInput, CreateNetworkInput, JoinResult };

/**
 * The network driver as the routes see it: one method per protocol call, each handed to the
 * part that holds its concern (networks, endpoints, publishing, overlay, reconcile).
 */
export class NetworkDriver {
  readonly #networks: Networks;
  readonly #endpoints: Endpoints;
  readonly #publishing: Publishing;
  readonly #overlay: Overlay;
  readonly #reconciler: Reconciler;

  constructor(deps: {
    state: StateManager;
    datapath: Datapath;
    firewall: Firewall;
    publisher: PortPublisher;
    logger: Logger;
    cluster?: ClusterService;
    /** The multi-host side shared with the IPAM driver (main.ts sets it up after start). */
    clusterLink?: ClusterLink;
    metrics?: Metrics;
    /** The multi-host name resolver's address, when it runs. */
    resolverAddress?: string;
    /** Shared with the IPAM driver: the container names Docker 29 sends with RequestAddress. */
    addressNames?: AddressNames;
    /** Names across hosts, told when an endpoint of a multi-host network comes or goes. */
    names?: { endpointsChanged(): void };
  }) {
    const context: DriverContext = {
      state: deps.state,
      datapath: deps.datapath,
      firewall: new FirewallSync(deps.firewall, deps.state, deps.logger),
      publisher: deps.publisher,
      logger: deps.logger,
      locks: new KeyedLocks(),
      cluster: deps.clusterLink ?? new ClusterLink(deps.cluster),
      deletions: new PendingDeletions(deps.logger),
      metrics: deps.metrics ?? new Metrics(),
      ...(deps.resolverAddress === undefined ? {} : { resolverAddress: deps.resolverAddress }),
      ...(deps.addressNames === undefined ? {} : { addressNames: deps.addressNames }),
      ...(deps.names === undefined ? {} : { names: deps.names }),
    };
    this.#overlay = new Overlay(context);
    this.#networks = new Networks(context, this.#overlay);
    this.#endpoints = new Endpoints(context, this.#networks);
    this.#publishing = new Publishing(context);
    this.#reconciler = new Reconciler(context, this.#networks, this.#endpoints, this.#overlay);
  }

  createNetwork(input: CreateNetworkInput): Promise<void> {
    return this.#networks.create(input);
  }

  deleteNetwork(networkId: string): Promise<void> {
    return this.#networks.delete(networkId);
  }

  createEndpoint(input: CreateEndpointInput): Promise<{ mac?: string }> {
    return this.#endpoints.create(input);
  }

  deleteEndpoint(networkId: string, endpointId: string): Promise<void> {
    return this.#endpoints.delete(networkId, endpointId);
  }

  endpointInfo(networkId: string, endpointId: string): Record<string, unknown> {
    return this.#endpoints.info(networkId, endpointId);
  }

  join(networkId: string, endpointId: string, sandbox?: string): Promise<JoinResult> {
    return this.#endpoints.join(networkId, endpointId, sandbox);
  }

  /**
   * Docker moves the container end back to the host itself; DeleteEndpoint, which always
   * follows, removes the pair. Published ports go here already: Docker 29 may never send
   * RevokeExternalConnectivity (after a live-restore), and a port must not outlive its
   * container's attachment.
   */
  leave(networkId: string, endpointId: string): Promise<void> {
    return this.#publishing.revoke(networkId, endpointId);
  }

  programExternalConnectivity(
    networkId: string,
    endpointId: string,
    ports: readonly PortBinding[],
  ): Promise<void> {
    return this.#publishing.program(networkId, endpointId, ports);
  }

  revokeExternalConnectivity(networkId: string, endpointId: string): Promise<void> {
    return this.#publishing.revoke(networkId, endpointId);
  }

  /** Re-opens the host side of every published port, after a plugin restart. */
  restorePublishedPorts(): Promise<void> {
    return this.#publishing.restore();
  }

  /** The other hosts of a multi-host network changed (from the etcd watch). */
  updatePeers(vni: number, peers: string[]): Promise<void> {
    return this.#overlay.updatePeers(vni, peers);
  }

  /** Multi-host networks this host is part of, to re-join in etcd after a restart. */
  clusterNetworks(): { vni: number; config: { subnet: string; gateway: string } }[] {
    return this.#overlay.networks();
  }

  /** Brings the host in line with the state at start-up; answers what it repaired. */
  reconcile(): Promise<string[]> {
    return this.#reconciler.reconcile();
  }

  /** Stops background retries. */
  stop(): void {
    this.#reconciler.stop();
  }
}

import type { Logger } from "pino";
import { type NameRecord, publishableNames } from "../cluster/published-names.ts";
import type { DockerApi, DockerEvent } from "./docker-api.ts";

/** What the publisher needs of the cluster service (the etcd side). */
export interface NameCluster {
  isJoined(vni: number): boolean;
  publishNames(vni: number, endpointId: string, record: NameRecord): Promise<void>;
  withdrawNames(vni: number, endpointId: string): Promise<void>;
  publishedNames(vni: number): ReadonlyMap<string, NameRecord>;
}

/** A multi-host network on this host, and the addresses of its endpoints here (bare). */
export interface LocalNetwork {
  networkId: string;
  vni: number;
  addresses: ReadonlyMap<string, string>;
}

/** The parts of `GET /containers/{id}/json` read here. */
interface ContainerJson {
  Name?: string;
  NetworkSettings?: {
    Networks?: Record<
      string,
      {
        NetworkID?: string;
        EndpointID?: string;
        Aliases?: string[] | null;
        DNSNames?: string[] | null;
      }
    >;
  };
}

/** The parts of `GET /networks/{id}` read here. */
interface NetworkJson {
  Containers?: Record<string, { EndpointID?: string }>;
}

const RESYNC_MS = 10_000;
const RETRY_CAP_MS = 10_000;

/**
 * Publishes, for each of this host's containers on a multi-host network, its name and network
 * aliases in etcd, so the other hosts' resolvers answer them. The plugin protocol never carries
 * names, so they come from the Docker API: its network events and inspects, in a background
 * task (never from a plugin request, which dockerd may be waiting on), with a full resync every
 * 10 s and whenever the event stream reconnects. Withdrawal is DeleteEndpoint's, at once.
 */
export class LocalNames {
  readonly #docker: DockerApi;
  readonly #cluster: NameCluster;
  readonly #networks: () => LocalNetwork[];
  readonly #logger: Logger;
  readonly #resyncMs: number;
  readonly #stop = new AbortController();
  /** Work runs one piece at a time, in order: events and resyncs never interleave. */
  #queue: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #dockerAway = false;

  constructor(deps: {
    docker: DockerApi;
    cluster: NameCluster;
    networks: () => LocalNetwork[];
    logger: Logger;
    resyncMs?: number;
  }) {
    this.#docker = deps.docker;
    this.#cluster = deps.cluster;
    this.#networks = deps.networks;
    this.#logger = deps.logger;
    this.#resyncMs = deps.resyncMs ?? RESYNC_MS;
  }

  /** Follows Docker's events and resyncs periodically, until {@link stop}. */
  start(): void {
    void this.#followEvents();
    const tick = (): void => {
      this.resyncSoon();
      this.#timer = setTimeout(tick, this.#resyncMs);
      this.#timer.unref();
    };
    this.#timer = setTimeout(tick, this.#resyncMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stop.abort();
    clearTimeout(this.#timer);
  }

  /** Queues a full resync (after joining a network, say). */
  resyncSoon(): void {
    this.#enqueue(() => this.resync());
  }

  /**
   * Publishes what is missing and withdraws what is gone, for every joined multi-host network.
   * Resolves when done; the queue serialises it with event handling.
   */
  async resync(): Promise<void> {
    for (const network of this.#networks()) {
      if (!this.#cluster.isJoined(network.vni)) continue;
      const inspected = (await this.#docker.get(
        `/networks/${encodeURIComponent(network.networkId)}`,
      )) as NetworkJson;
      const attached = new Map<string, string>();
      for (const [containerId, entry] of Object.entries(inspected.Containers ?? {})) {
        if (entry.EndpointID) attached.set(entry.EndpointID, containerId);
      }
      const published = this.#cluster.publishedNames(network.vni);
      for (const endpointId of [...published.keys()]) {
        if (!attached.has(endpointId) || !network.addresses.has(endpointId)) {
          await this.#cluster.withdrawNames(network.vni, endpointId);
        }
      }
      for (const [endpointId, containerId] of attached) {
        if (published.has(endpointId) || !network.addresses.has(endpointId)) continue;
        await this.#publishContainer(containerId);
      }
    }
  }

  /** Publishes a container's names on each joined multi-host network it is attached to. */
  async #publishContainer(containerId: string): Promise<void> {
    let container: ContainerJson;
    try {
      container = (await this.#docker.get(
        `/containers/${encodeURIComponent(containerId)}/json`,
      )) as ContainerJson;
    } catch (error) {
      // Gone already (a short-lived container): nothing to publish.
      this.#logger.debug({ err: error, container: containerId.slice(0, 12) }, "cannot inspect");
      return;
    }
    const networks = new Map(this.#networks().map((network) => [network.networkId, network]));
    for (const attachment of Object.values(container.NetworkSettings?.Networks ?? {})) {
      const network = networks.get(attachment.NetworkID ?? "");
      const endpointId = attachment.EndpointID ?? "";
      const address = network?.addresses.get(endpointId);
      if (network === undefined || address === undefined) continue;
      if (!this.#cluster.isJoined(network.vni)) continue;
      const names = publishableNames([
        (container.Name ?? "").replace(/^\//, ""),
        ...(attachment.Aliases ?? []),
        ...(attachment.DNSNames ?? []),
      ]);
      if (names.length === 0) continue;
      await this.#cluster.publishNames(network.vni, endpointId, { names, ipv4: address });
      this.#logger.debug({ vni: network.vni, names, address }, "published container names");
    }
  }

  #onEvent(event: DockerEvent): void {
    // A renamed container is published again under its new name (where it is published).
    if (event.Type === "container" && event.Action === "rename" && event.Actor?.ID) {
      const containerId = event.Actor.ID;
      this.#enqueue(() => this.#publishContainer(containerId));
      return;
    }
    const containerId = event.Actor?.Attributes?.container;
    const networkId = event.Actor?.ID;
    if (event.Type !== "network" || containerId === undefined || networkId === undefined) return;
    if (!this.#networks().some((network) => network.networkId === networkId)) return;
    if (event.Action === "connect") this.#enqueue(() => this.#publishContainer(containerId));
    else if (event.Action === "disconnect") this.resyncSoon();
  }

  async #followEvents(): Promise<void> {
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      const started = Date.now();
      try {
        // A resync right after subscribing covers what happened while not subscribed.
        const stream = this.#docker.events(
          { type: ["network", "container"], event: ["connect", "disconnect", "rename"] },
          (event) => this.#onEvent(event),
          this.#stop.signal,
        );
        this.resyncSoon();
        await stream;
        if (this.#dockerAway) this.#logger.info("Docker API answers again; names published");
        this.#dockerAway = false;
      } catch (error) {
        if (!this.#dockerAway) {
          this.#logger.warn(
            { err: error },
            "cannot follow Docker's events; container names of multi-host networks are published once the Docker API answers (is the host's /run mounted? see README)",
          );
        }
        this.#dockerAway = true;
      }
      if (this.#stop.signal.aborted) break;
      failures = Date.now() - started > 30_000 ? 0 : failures + 1;
      const delay = Math.min(RETRY_CAP_MS, 250 * 2 ** Math.min(failures, 8));
      await new Promise((resolve) => setTimeout(resolve, delay).unref());
    }
  }

  #enqueue(work: () => Promise<void>): void {
    this.#queue = this.#queue
      .then(work)
      .catch((error: unknown) =>
        this.#logger.debug(
          { err: error },
          "cannot publish container names yet; retrying at the next resync",
        ),
      );
  }
}

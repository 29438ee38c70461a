import type { Logger } from "pino";
import { type NameRecord, publishableNames } from "../cluster/published-names.ts";
import { shortId } from "../names.ts";
import type { DockerApi, DockerEvent } from "./docker-api.ts";

/** What the publisher needs of the cluster service (the etcd side). */
export interface NameCluster {
  isJoined(vni: number): boolean;
  /** This host's names on a network, all of them; the cluster makes etcd agree and keeps it so. */
  setLocalNames(vni: number, records: ReadonlyMap<string, NameRecord>): void;
}

/** One of this host's endpoints on a multi-host network. */
export interface LocalEndpoint {
  endpointId: string;
  /** Bare IPv4 address; endpoints without one publish nothing (records are A records). */
  ipv4?: string;
  /** The container's name as Docker 29 sent it with RequestAddress. */
  name?: string;
}

/** A multi-host network on this host and its endpoints here. */
export interface LocalNetwork {
  networkId: string;
  vni: number;
  endpoints: readonly LocalEndpoint[];
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
  Containers?: Record<string, { EndpointID?: string; Name?: string }>;
}

/** What the Docker API says of an endpoint: its container, that container's name, all names. */
interface ApiNames {
  containerId: string;
  containerName: string;
  names: string[];
}

const RESYNC_MS = 10_000;
const RETRY_CAP_MS = 10_000;

/**
 * Decides which names this host publishes for its containers on multi-host networks, and hands
 * the whole set to the cluster, which makes etcd agree with it (under this host's lease) and
 * keeps it so: the set is derived again from the endpoints on every change, never remembered
 * as what was once written.
 *
 * Names come from two places. Docker 29 and later send the container's name with
 * RequestAddress, and the endpoint keeps it: that needs no access to the host. Network
 * aliases (Compose service names), renames and names on older releases are only in the Docker
 * API, which the user may grant (the `docker-api` mount): then its network events and inspects
 * are read in a background task (never from a plugin request, which dockerd may be waiting
 * on), with a full resync every 10 s and whenever the event stream reconnects.
 */
export class LocalNames {
  readonly #docker: DockerApi | undefined;
  readonly #cluster: NameCluster;
  readonly #networks: () => LocalNetwork[];
  readonly #logger: Logger;
  readonly #resyncMs: number;
  readonly #stop = new AbortController();
  /** Names the Docker API gave, per endpoint (only while the API is granted). */
  readonly #fromApi = new Map<string, ApiNames>();
  /** Work runs one piece at a time, in order: events and resyncs never interleave. */
  #queue: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #dockerAway = false;

  constructor(deps: {
    /** The Docker API when the user granted it; undefined: names from requests only. */
    docker: DockerApi | undefined;
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

  /** Follows Docker's events (when granted) and resyncs periodically, until {@link stop}. */
  start(): void {
    if (this.#docker !== undefined) void this.#followEvents(this.#docker);
    const tick = (): void => {
      this.resyncSoon();
      this.#timer = setTimeout(tick, this.#resyncMs);
      this.#timer.unref();
    };
    this.#timer = setTimeout(tick, this.#resyncMs);
    this.#timer.unref();
    this.refresh();
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
   * Hands the cluster the names of every joined network, as the endpoints and what the
   * Docker API said make them now. Cheap and synchronous: called on every endpoint change.
   */
  refresh(): void {
    const live = new Set<string>();
    for (const network of this.#networks()) {
      for (const endpoint of network.endpoints) live.add(endpoint.endpointId);
      if (!this.#cluster.isJoined(network.vni)) continue;
      const records = new Map<string, NameRecord>();
      for (const endpoint of network.endpoints) {
        if (endpoint.ipv4 === undefined) continue;
        // The Docker API, when it answered for the endpoint, knows the container's name now
        // (after a rename) and its aliases; the name sent with the request is the fallback.
        const api = this.#fromApi.get(endpoint.endpointId);
        const names = publishableNames(api === undefined ? [endpoint.name] : api.names);
        if (names.length > 0) records.set(endpoint.endpointId, { names, ipv4: endpoint.ipv4 });
      }
      this.#cluster.setLocalNames(network.vni, records);
    }
    for (const endpointId of this.#fromApi.keys()) {
      if (!live.has(endpointId)) this.#fromApi.delete(endpointId);
    }
  }

  /**
   * Reads again what the Docker API says of every joined network's containers (when granted),
   * then {@link refresh}es. A network the API cannot answer for keeps its last names and never
   * stops the others; a rename missed as an event is seen here by its new name.
   */
  async resync(): Promise<void> {
    const docker = this.#docker;
    if (docker !== undefined) {
      for (const network of this.#networks()) {
        if (!this.#cluster.isJoined(network.vni)) continue;
        await this.#resyncNetwork(docker, network).catch((error: unknown) =>
          this.#logger.debug(
            { err: error, network: shortId(network.networkId) },
            "cannot read the network's containers from the Docker API; trying at the next resync",
          ),
        );
      }
    }
    this.refresh();
  }

  async #resyncNetwork(docker: DockerApi, network: LocalNetwork): Promise<void> {
    const inspected = (await docker.get(
      `/networks/${encodeURIComponent(network.networkId)}`,
    )) as NetworkJson;
    const listed = new Map<string, { containerId: string; name: string }>();
    for (const [containerId, entry] of Object.entries(inspected.Containers ?? {})) {
      if (entry.EndpointID) listed.set(entry.EndpointID, { containerId, name: entry.Name ?? "" });
    }
    for (const endpoint of network.endpoints) {
      const entry = listed.get(endpoint.endpointId);
      if (entry === undefined) {
        // Docker lists no container for it (yet, or any more): names from requests only.
        this.#fromApi.delete(endpoint.endpointId);
        continue;
      }
      const known = this.#fromApi.get(endpoint.endpointId);
      if (known?.containerId === entry.containerId && known.containerName === entry.name) continue;
      await this.#inspect(docker, entry.containerId);
    }
  }

  /** Reads a container's names and aliases on each multi-host network it is on here. */
  async #inspect(docker: DockerApi, containerId: string): Promise<void> {
    let container: ContainerJson;
    try {
      container = (await docker.get(
        `/containers/${encodeURIComponent(containerId)}/json`,
      )) as ContainerJson;
    } catch (error) {
      // Gone already (a short-lived container): nothing to add.
      this.#logger.debug({ err: error, container: shortId(containerId) }, "cannot inspect");
      return;
    }
    const containerName = (container.Name ?? "").replace(/^\//, "");
    for (const attachment of Object.values(container.NetworkSettings?.Networks ?? {})) {
      const endpointId = attachment.EndpointID ?? "";
      if (endpointId === "") continue;
      this.#fromApi.set(endpointId, {
        containerId,
        containerName,
        names: [containerName, ...(attachment.Aliases ?? []), ...(attachment.DNSNames ?? [])],
      });
    }
  }

  #onEvent(docker: DockerApi, event: DockerEvent): void {
    // A renamed container is read again under its new name.
    if (event.Type === "container" && event.Action === "rename" && event.Actor?.ID) {
      const containerId = event.Actor.ID;
      this.#enqueue(async () => {
        await this.#inspect(docker, containerId);
        this.refresh();
      });
      return;
    }
    const containerId = event.Actor?.Attributes?.container;
    const networkId = event.Actor?.ID;
    if (event.Type !== "network" || containerId === undefined || networkId === undefined) return;
    if (!this.#networks().some((network) => network.networkId === networkId)) return;
    if (event.Action === "connect") {
      this.#enqueue(async () => {
        await this.#inspect(docker, containerId);
        this.refresh();
      });
    } else if (event.Action === "disconnect") this.resyncSoon();
  }

  async #followEvents(docker: DockerApi): Promise<void> {
    let failures = 0;
    while (!this.#stop.signal.aborted) {
      const started = Date.now();
      try {
        // A resync right after subscribing covers what happened while not subscribed.
        const stream = docker.events(
          { type: ["network", "container"], event: ["connect", "disconnect", "rename"] },
          (event) => this.#onEvent(docker, event),
          this.#stop.signal,
        );
        this.resyncSoon();
        await stream;
        if (this.#dockerAway) this.#logger.info("Docker API answers again; aliases published");
        this.#dockerAway = false;
      } catch (error) {
        if (!this.#dockerAway) {
          this.#logger.warn(
            { err: error },
            "cannot follow Docker's events; network aliases of multi-host networks are published once the Docker API answers (does the docker-api mount hold docker.sock? see README)",
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
        this.#logger.debug({ err: error }, "cannot read container names yet; retrying"),
      );
  }
}

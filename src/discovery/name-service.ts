import type { Logger } from "pino";
import type { ClusterService, PublishedName } from "../cluster/cluster.ts";
import type { Datapath } from "../datapath/datapath.ts";
import { DnsServer } from "../dns/server.ts";
import { bareAddress, type StateDocument } from "../state/model.ts";
import type { DockerApi } from "./docker-api.ts";
import { type LocalEndpoint, LocalNames, type LocalNetwork } from "./local-names.ts";
import { NameTable } from "./name-table.ts";
import { answerQuestion, memoiseClientNetworks } from "./resolver.ts";

/** How often to try again to take the resolver's address and port when that fails. */
const RETRY_MS = 10_000;

/**
 * Names across hosts on multi-host networks. Each host publishes its containers' names in
 * etcd ({@link LocalNames}) and answers the other hosts' names with a small DNS server on an
 * address of its own (on the loopback interface). Docker's embedded DNS forwards the names it does not know to the servers of
 * dockerd's `dns` setting: with this resolver's address first in that setting, a container
 * resolves the containers of the other hosts by name and alias. Join routes each container on
 * a multi-host network to the address through the network's gateway.
 */
export class NameService {
  readonly #address: string;
  readonly #state: () => Readonly<StateDocument>;
  readonly #datapath: Datapath;
  readonly #logger: Logger;
  readonly #table = new NameTable();
  readonly #local: LocalNames;
  readonly #server: DnsServer;
  /** Networks whose names the etcd watch has reported at least once. */
  readonly #followed = new Set<number>();
  #retry: NodeJS.Timeout | undefined;

  constructor(deps: {
    address: string;
    state: () => Readonly<StateDocument>;
    /** Changes with every change of the state (StateManager.revision). */
    stateRevision: () => number;
    cluster: ClusterService;
    /** The Docker API when the user granted it (the `docker-api` mount); else undefined. */
    docker: DockerApi | undefined;
    datapath: Datapath;
    logger: Logger;
  }) {
    this.#address = deps.address;
    this.#state = deps.state;
    this.#datapath = deps.datapath;
    this.#logger = deps.logger;
    this.#local = new LocalNames({
      docker: deps.docker,
      cluster: deps.cluster,
      networks: () => localNetworks(this.#state()),
      logger: deps.logger,
    });
    // Built once per state change: a query costs a map lookup, not a scan of every endpoint.
    const networksOf = memoiseClientNetworks(this.#state, deps.stateRevision);
    this.#server = new DnsServer({
      address: deps.address,
      port: 53,
      logger: deps.logger,
      resolve: (question, client) =>
        answerQuestion(question, networksOf(client.address), this.#table),
    });
  }

  /** An endpoint of a network was made or removed here: publish this host's names again. */
  endpointsChanged(): void {
    this.#local.refresh();
  }

  /** The etcd watch reported a network's names (all hosts'). */
  onNames(vni: number, names: PublishedName[]): void {
    this.#table.replace(vni, names);
    if (names.length === 0) this.#followed.delete(vni);
    // Joined (or re-joined after a restart): publish this host's names now, not at the resync.
    if (!this.#followed.has(vni)) {
      this.#followed.add(vni);
      this.#local.resyncSoon();
    }
  }

  /** Takes the address, serves DNS on it, and starts publishing; retries until it can. */
  async start(): Promise<void> {
    this.#local.start();
    const attempt = async (): Promise<void> => {
      try {
        await this.#datapath.ensureLocalAddress(this.#address);
        await this.#server.start();
        this.#logger.info(
          { address: this.#address },
          "resolving container names across hosts: put this address first in dockerd's dns setting",
        );
      } catch (error) {
        this.#logger.error(
          { err: error, address: this.#address },
          "cannot serve names across hosts yet; retrying",
        );
        this.#retry = setTimeout(() => void attempt(), RETRY_MS);
        this.#retry.unref();
      }
    };
    await attempt();
  }

  stop(): void {
    clearTimeout(this.#retry);
    this.#local.stop();
    void this.#server.stop().catch(() => {});
  }
}

/** The multi-host networks of a state and their endpoints: IPv4 address and container name. */
export function localNetworks(state: Readonly<StateDocument>): LocalNetwork[] {
  const networks = new Map<string, LocalNetwork & { endpoints: LocalEndpoint[] }>();
  for (const network of Object.values(state.networks)) {
    if (network.vxlanId === undefined) continue;
    networks.set(network.id, { networkId: network.id, vni: network.vxlanId, endpoints: [] });
  }
  for (const endpoint of Object.values(state.endpoints)) {
    const network = networks.get(endpoint.networkId);
    if (network === undefined) continue;
    network.endpoints.push({
      endpointId: endpoint.id,
      ...(endpoint.address === undefined ? {} : { ipv4: bareAddress(endpoint.address) }),
      ...(endpoint.name === undefined ? {} : { name: endpoint.name }),
    });
  }
  return [...networks.values()];
}

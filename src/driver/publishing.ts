import { exhausted, SwitchyardError } from "../errors.ts";
import { tryParseAddress } from "../ipam/prefix.ts";
import { bareAddress, type PortBinding, type StateDocument } from "../state/model.ts";
import {
  type DriverContext,
  findEndpoint,
  findNetwork,
  lookupEndpoint,
  networkKey,
  PORTS_KEY,
} from "./context.ts";
import { candidateHostPorts, choosePorts, describeBinding } from "./ports.ts";

/** Published ports (`-p`): host ports chosen and held, relays opened, DNAT rules applied. */
export class Publishing {
  readonly #context: DriverContext;

  constructor(context: DriverContext) {
    this.#context = context;
  }

  /**
   * ProgramExternalConnectivity: chooses the host ports (pure), opens them (undone on
   * failure), then commits them with their rules in the packet filter.
   */
  async program(
    networkId: string,
    endpointId: string,
    requested: readonly PortBinding[],
  ): Promise<void> {
    // Nothing to publish (no -p): answer at once, without queueing behind other work.
    if (
      requested.length === 0 &&
      this.#context.state.document.endpoints[endpointId]?.ports.length === 0
    ) {
      return;
    }
    const published = await this.#context.locks.run([networkKey(networkId), PORTS_KEY], () =>
      this.#program(networkId, endpointId, requested),
    );
    // After the DNAT is in place, and outside the locks: flows of these ports that conntrack
    // already holds (to a container that had the port before, or untranslated to the host)
    // would otherwise keep their old way for as long as their sender keeps sending.
    await this.forgetFlows(published);
  }

  /** Opens and commits the endpoint's ports (its locks held); answers what it published. */
  async #program(
    networkId: string,
    endpointId: string,
    requested: readonly PortBinding[],
  ): Promise<PortBinding[]> {
    const document = this.#context.state.document;
    const network = findNetwork(document, networkId);
    const endpoint = findEndpoint(document, networkId, endpointId);
    // Internal networks publish nothing, as with Docker's bridge; a retry changes nothing.
    if (network.internal || endpoint.address === undefined || endpoint.ports.length > 0) return [];
    const target = bareAddress(endpoint.address);
    const opened: PortBinding[] = [];
    try {
      for (const binding of requested) {
        const wanted = { ...binding, hostIp: binding.hostIp || network.hostBindingIpv4 || "" };
        opened.push(await this.#open(document, endpointId, wanted, target, opened));
      }
      const publish = (state: StateDocument): void => {
        findEndpoint(state, networkId, endpointId).ports = opened;
      };
      await this.#context.firewall.around(publish, () => this.#context.state.commit(publish));
      return opened;
    } catch (error) {
      await this.#context.publisher.close(endpointId);
      throw error;
    }
  }

  /** RevokeExternalConnectivity: closes the relays (cutting their connections) and the rules. */
  async revoke(networkId: string, endpointId: string): Promise<void> {
    if (this.#context.state.document.endpoints[endpointId]?.ports.length === 0) return;
    const revoked = await this.#context.locks.run(
      [networkKey(networkId), PORTS_KEY],
      async (): Promise<readonly PortBinding[]> => {
        const endpoint = lookupEndpoint(this.#context.state.document, networkId, endpointId);
        if (endpoint === undefined) return [];
        await this.#context.publisher.close(endpointId);
        if (endpoint.ports.length === 0) return [];
        const revoke = (state: StateDocument): void => {
          const current = state.endpoints[endpointId];
          if (current !== undefined) current.ports = [];
        };
        await this.#context.firewall.around(revoke, () => this.#context.state.commit(revoke));
        return endpoint.ports;
      },
    );
    // Once the DNAT is gone: a flow conntrack translated keeps going to this container otherwise.
    await this.forgetFlows(revoked);
  }

  /**
   * Deletes the conntrack entries of the UDP host ports among `bindings`, as Docker's bridge
   * does when it maps or unmaps a UDP port: a UDP flow is never closed, so its entry (and the
   * translation, or none, it was given) lives as long as its sender keeps sending. Called after
   * the packet filter shows the change. A failure is logged: the port is published anyway.
   */
  async forgetFlows(bindings: readonly PortBinding[]): Promise<void> {
    const { datapath, logger } = this.#context;
    if (datapath.deleteConntrackEntries === undefined) return;
    await Promise.all(
      bindings
        .filter((binding) => binding.proto === "udp" && binding.hostPort !== 0)
        .map(async (binding) => {
          const destination = tryParseAddress(binding.hostIp);
          const described = describeBinding(binding);
          try {
            const deleted = await datapath.deleteConntrackEntries?.({
              proto: "udp",
              port: binding.hostPort,
              family: destination?.v6 ? 6 : 4,
              // An unspecified host address matches the port on any address.
              ...(destination === undefined || destination.value === 0n ? {} : { destination }),
            });
            if (deleted) logger.debug({ binding: described, deleted }, "conntrack entries deleted");
          } catch (error) {
            logger.warn(
              { err: error, binding: described },
              "cannot delete the conntrack entries of a published UDP port; a sender that keeps sending may still reach its old target",
            );
          }
        }),
    );
  }

  /**
   * Re-opens the host side of every published port that is not open, after a plugin restart.
   * Start-up reconciliation does it in its place (after the repairs and the packet filter);
   * under the ports lock this one waits behind it (and holds it off, when called first), so a
   * relay is never opened for an endpoint that reconciliation forgets, and opens only what it
   * did not: all of it when reconciliation failed before it got there.
   */
  restore(): Promise<void> {
    return this.#context.locks.run([PORTS_KEY], () => this.reopen());
  }

  /** Opens the relays of the state's published ports that are not open (the caller orders it). */
  async reopen(): Promise<void> {
    const { publisher, logger } = this.#context;
    for (const endpoint of Object.values(this.#context.state.document.endpoints)) {
      if (endpoint.address === undefined) continue;
      for (const binding of endpoint.ports) {
        if (publisher.isOpen(endpoint.id, binding)) continue;
        try {
          await publisher.open(endpoint.id, binding, {
            address: bareAddress(endpoint.address),
            port: binding.containerPort,
          });
        } catch (error) {
          logger.error(
            { err: error, endpoint: endpoint.id, binding: describeBinding(binding) },
            "cannot re-open published port",
          );
        }
      }
    }
  }

  /** Opens the first host port of the binding's candidates that the host lets us have. */
  async #open(
    document: Readonly<StateDocument>,
    endpointId: string,
    wanted: PortBinding,
    target: string,
    earlier: readonly PortBinding[],
  ): Promise<PortBinding> {
    const ports = choosePorts(Object.values(document.endpoints), endpointId, wanted, earlier);
    const single = wanted.hostPort !== 0 && wanted.hostPortEnd === wanted.hostPort;
    for (const port of ports) {
      const binding = { ...wanted, hostPort: port, hostPortEnd: port };
      try {
        await this.#context.publisher.open(endpointId, binding, {
          address: target,
          port: binding.containerPort,
        });
        return binding;
      } catch (error) {
        if (single || !(error instanceof SwitchyardError && error.kind === "Conflict")) throw error;
      }
    }
    const range = candidateHostPorts(wanted);
    throw exhausted(
      `cannot publish ${describeBinding(wanted)}: no free host port in ${range[0]}-${range.at(-1)}`,
    );
  }
}

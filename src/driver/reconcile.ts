import type { PortBinding } from "../state/model.ts";
import { type DriverContext, findEndpoint, findNetwork, networkKey } from "./context.ts";
import type { Endpoints } from "./endpoints.ts";
import type { Networks } from "./networks.ts";
import type { Overlay } from "./overlay.ts";
import { Publishing } from "./publishing.ts";
import {
  describeRepair,
  isReported,
  liveUnknownBridges,
  planRepairs,
  type Repair,
  repairNetwork,
} from "./repairs.ts";

/** How often and how long a failed repair is tried again. */
const RETRY_DELAYS_MS = [1_000, 5_000, 15_000, 60_000];

/**
 * Start-up reconciliation, in this order: the repairs (planned purely, carried out one by
 * one and logged; a failed one does not stop the rest and is tried again later under its
 * network's lock), the packet filter, the relays of published ports, and last the conntrack
 * entries of published UDP ports. Relays come after the repairs, which forget endpoints whose
 * container went; conntrack entries after the packet filter, which a reboot emptied: a UDP
 * flow that arrived before its DNAT was back would otherwise keep bypassing it.
 */
export class Reconciler {
  readonly #context: DriverContext;
  readonly #networks: Networks;
  readonly #endpoints: Endpoints;
  readonly #overlay: Overlay;
  /** Publishing keeps no state of its own: this one acts as the driver's does. */
  readonly #publishing: Publishing;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(context: DriverContext, networks: Networks, endpoints: Endpoints, overlay: Overlay) {
    this.#context = context;
    this.#networks = networks;
    this.#endpoints = endpoints;
    this.#overlay = overlay;
    this.#publishing = new Publishing(context);
  }

  /** Brings the host in line with the state; answers what it repaired or must report. */
  async reconcile(): Promise<string[]> {
    const { reported, rebuilt } = await this.#reconcileAlone();
    // Outside the exclusive section (one command per port; requests need not wait for it):
    // any later change of these ports deletes their entries again after its own.
    if (rebuilt.length > 0) await this.#publishing.forgetFlows(rebuilt);
    return reported;
  }

  /**
   * The repairs, the packet filter and the relays, holding off every request. `rebuilt`: the
   * published ports (as the state held them before the repairs) whose DNAT was rebuilt.
   */
  #reconcileAlone(): Promise<{ reported: string[]; rebuilt: PortBinding[] }> {
    const { locks, deletions, datapath, logger, firewall } = this.#context;
    return locks.exclusive(async () => {
      await deletions.settled();
      // Before the repairs: an endpoint they forget loses its DNAT in the rebuild too.
      const published = Object.values(this.#context.state.document.endpoints).flatMap(
        (endpoint) => endpoint.ports,
      );
      const links = await datapath.links();
      const repairs = planRepairs(this.#context.state.document, links);
      const reported: string[] = [];
      const failed: Repair[] = [];
      for (const repair of repairs) {
        try {
          await this.#execute(repair);
          if (isReported(repair)) {
            this.#context.metrics.repair(repair.kind, "ok");
            reported.push(describeRepair(repair));
            logger.warn({ repair: describeRepair(repair) }, "reconciled");
          }
        } catch (error) {
          this.#context.metrics.repair(repair.kind, "error");
          failed.push(repair);
          logger.error({ err: error, repair: describeRepair(repair) }, "repair failed; will retry");
        }
      }
      const unknown = liveUnknownBridges(repairs, links);
      let rebuilt: PortBinding[] = [];
      if (unknown.length > 0) {
        logger.error(
          { bridges: unknown },
          "bridges with containers that this state does not know (an empty or wrong state directory?); leaving the packet filter as it is so they keep working",
        );
      } else {
        await firewall.sync();
        rebuilt = published;
      }
      await this.#publishing.reopen();
      for (const repair of failed) this.#retry(repair, 0);
      return { reported, rebuilt };
    });
  }

  /** Stops pending retries (at shutdown and in tests). */
  stop(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #retry(repair: Repair, attempt: number): void {
    const delay = RETRY_DELAYS_MS[attempt];
    if (delay === undefined) {
      this.#context.logger.error({ repair: describeRepair(repair) }, "repair failed for good");
      return;
    }
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      const networkId = repairNetwork(repair);
      const keys = networkId === undefined ? [] : [networkKey(networkId)];
      this.#context.locks
        .run(keys, () => this.#execute(repair))
        .then(
          () => {
            this.#context.metrics.repair(repair.kind, "ok");
            this.#context.logger.warn({ repair: describeRepair(repair) }, "reconciled on retry");
          },
          (error: unknown) => {
            this.#context.metrics.repair(repair.kind, "error");
            this.#context.logger.warn(
              { err: error, repair: describeRepair(repair), attempt },
              "repair failed again",
            );
            this.#retry(repair, attempt + 1);
          },
        );
    }, delay);
    timer.unref();
    this.#timers.add(timer);
  }

  async #execute(repair: Repair): Promise<void> {
    const { datapath, logger } = this.#context;
    const document = this.#context.state.document;
    switch (repair.kind) {
      case "ensure-bridge": {
        const network = document.networks[repair.networkId];
        if (network !== undefined) await this.#networks.ensureOwnedBridge(network);
        return;
      }
      case "missing-user-bridge":
        logger.error({ network: repair.networkId, bridge: repair.bridge }, describeRepair(repair));
        return;
      case "ensure-vxlan": {
        const network = findNetwork(document, repair.networkId);
        await this.#overlay.ensureDevice(network, this.#overlay.peersOf(document, network.vxlanId));
        return;
      }
      case "reattach":
        await datapath.attach(repair.veth, repair.bridge);
        return;
      case "forget-endpoint": {
        const endpoint = document.endpoints[repair.endpointId];
        if (endpoint === undefined) return;
        await this.#endpoints.forget(findEndpoint(document, repair.networkId, repair.endpointId));
        if (!repair.released) return;
        await this.#endpoints.releaseAddresses(findNetwork(document, repair.networkId), endpoint);
        await datapath.deleteLink(repair.veth);
        return;
      }
      case "delete-stray":
        await datapath.deleteLink(repair.link);
        return;
      case "leave-alone":
        logger.warn({ link: repair.link }, describeRepair(repair));
        return;
    }
  }
}

import type { ClusterService } from "../cluster/cluster.ts";

/**
 * The multi-host side as both drivers see it: absent (single host), not up yet and why (set
 * up after start, see main.ts), or up. One object shared by the network and IPAM drivers, so
 * they can never disagree about it.
 */
export class ClusterLink {
  #service: ClusterService | undefined;
  #pending: string | undefined;

  constructor(service?: ClusterService) {
    this.#service = service;
  }

  /** The cluster service, once up. */
  get service(): ClusterService | undefined {
    return this.#service;
  }

  /** Why multi-host networks are not available yet, while ETCD_ENDPOINTS is set but not up. */
  get pending(): string | undefined {
    return this.#pending;
  }

  /** The multi-host side came up: multi-host networks and pools work from now on. */
  attach(service: ClusterService): void {
    this.#service = service;
    this.#pending = undefined;
  }

  /** It could not be set up (yet): multi-host calls answer `reason`. Ignored once up. */
  setPending(reason: string): void {
    if (this.#service === undefined) this.#pending = reason;
  }
}

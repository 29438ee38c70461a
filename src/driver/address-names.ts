/**
 * The container names Docker 29 and later send in RequestAddress
 * (`com.docker.network.endpoint.name`), kept until CreateEndpoint brings the same address: the
 * network protocol never names the container, so this is how an endpoint learns whose it is
 * without asking the Docker API. IPAM and the network driver run in the same process.
 */
export class AddressNames {
  /** Address (bare, canonical) → container name, oldest first. */
  readonly #byAddress = new Map<string, string>();
  readonly #limit: number;

  /**
   * `limit` bounds what requests that never reach CreateEndpoint (a failed `docker run`, or
   * addresses of another driver's networks) can leave behind: the oldest go first.
   */
  constructor(limit = 4096) {
    this.#limit = limit;
  }

  /** RequestAddress answered `address` for the container `name`. */
  remember(address: string, name: string): void {
    this.#byAddress.delete(address);
    this.#byAddress.set(address, name);
    while (this.#byAddress.size > this.#limit) {
      const oldest = this.#byAddress.keys().next().value;
      if (oldest === undefined) break;
      this.#byAddress.delete(oldest);
    }
  }

  /** ReleaseAddress: the address is no one's any more. */
  forget(address: string): void {
    this.#byAddress.delete(address);
  }

  /** CreateEndpoint: the name given with one of the endpoint's addresses, taken once. */
  take(...addresses: (string | undefined)[]): string | undefined {
    let name: string | undefined;
    for (const address of addresses) {
      if (address === undefined) continue;
      name ??= this.#byAddress.get(address);
      this.#byAddress.delete(address);
    }
    return name;
  }
}

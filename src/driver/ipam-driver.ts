import { badRequest } from "../errors.ts";
import { Ipam } from "../ipam/ipam.ts";
import { OptionKeys } from "../protocol/wire.ts";
import type { StateManager } from "../state/state-manager.ts";

/** The IPAM driver: the pure allocator, with every change saved before it is answered. */
export class IpamDriver {
  readonly #state: StateManager;

  constructor(state: StateManager) {
    this.#state = state;
  }

  defaultAddressSpaces(): { local: string; global: string } {
    return { local: Ipam.localAddressSpace, global: Ipam.globalAddressSpace };
  }

  requestPool(input: {
    addressSpace?: string;
    pool?: string;
    subPool?: string;
    v6?: boolean;
    options?: Record<string, string> | null;
  }): Promise<{ poolId: string; pool: string }> {
    if ((input.subPool ?? "") !== "" && (input.pool ?? "") === "") {
      throw badRequest("an ip-range (SubPool) needs a subnet (Pool) too");
    }
    return this.#state.change((_state, ipam) =>
      ipam.requestPool({
        addressSpace: input.addressSpace || Ipam.localAddressSpace,
        pool: input.pool || undefined,
        subPool: input.subPool || undefined,
        v6: input.v6 ?? false,
        options: input.options ?? {},
      }),
    );
  }

  releasePool(poolId: string): Promise<void> {
    return this.#state.change((_state, ipam) => ipam.releasePool(poolId));
  }

  requestAddress(input: {
    poolId: string;
    address?: string;
    options?: Record<string, string> | null;
  }): Promise<string> {
    const gateway =
      input.options?.[OptionKeys.requestAddressType] === OptionKeys.gatewayAddressType;
    return this.#state.change((_state, ipam) =>
      ipam.requestAddress(input.poolId, { address: input.address || undefined, gateway }),
    );
  }

  releaseAddress(poolId: string, address: string): Promise<void> {
    return this.#state.change((_state, ipam) => ipam.releaseAddress(poolId, address));
  }
}

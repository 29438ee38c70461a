import type { Firewall } from "../../src/firewall/firewall.ts";

/** A firewall that does nothing, for tests that do not look at packet filtering. */
export class NoFirewall implements Firewall {
  applied = 0;
  async apply(): Promise<void> {
    this.applied += 1;
  }
  async clear(): Promise<void> {}
}

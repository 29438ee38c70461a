import type { StateDocument } from "../state/model.ts";

/** Brings the host's packet filter in line with the state (whole ruleset at once). */
export interface Firewall {
  apply(state: Readonly<StateDocument>): Promise<void>;
  /** Removes everything Switchyard added to the packet filter. */
  clear(): Promise<void>;
}

/** A firewall that does nothing, for tests that do not look at packet filtering. */
export class NoFirewall implements Firewall {
  applied = 0;
  async apply(): Promise<void> {
    this.applied += 1;
  }
  async clear(): Promise<void> {}
}

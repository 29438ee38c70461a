import type { StateDocument } from "../state/model.ts";

/** Brings the host's packet filter in line with the state (whole ruleset at once). */
export interface Firewall {
  apply(state: Readonly<StateDocument>): Promise<void>;
  /** Removes everything Switchyard added to the packet filter. */
  clear(): Promise<void>;
}

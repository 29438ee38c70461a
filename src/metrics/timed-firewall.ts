import type { Firewall } from "../firewall/firewall.ts";
import type { StateDocument } from "../state/model.ts";
import { type Metrics, secondsSince } from "./metrics.ts";

/**
 * A packet filter that times each apply into the metrics. A wrapper, so the firewall itself
 * (its renderer and backends) knows nothing of metrics.
 */
export class TimedFirewall implements Firewall {
  readonly #inner: Firewall;
  readonly #metrics: Metrics;

  constructor(inner: Firewall, metrics: Metrics) {
    this.#inner = inner;
    this.#metrics = metrics;
  }

  async apply(state: Readonly<StateDocument>): Promise<void> {
    const start = process.hrtime.bigint();
    try {
      await this.#inner.apply(state);
      this.#metrics.firewallApply("ok", secondsSince(start));
    } catch (error) {
      this.#metrics.firewallApply("error", secondsSince(start));
      throw error;
    }
  }

  clear(): Promise<void> {
    return this.#inner.clear();
  }
}

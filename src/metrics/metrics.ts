import type { PoolInfo } from "../ipam/ipam.ts";
import type { StateDocument } from "../state/model.ts";
import { registerProcessMetrics } from "./process.ts";
import { type Counter, type Gauge, type Histogram, Registry } from "./registry.ts";

/** How a call ended, as a metric label. */
export type Outcome = "ok" | "error";

/** What the scrape-time gauges read: the committed state and the allocator's pools. */
export interface MetricSources {
  state?: () => Readonly<StateDocument>;
  pools?: () => readonly PoolInfo[];
  /** Switchyard's version, shown as `switchyard_build_info{version}`. */
  version?: string;
}

/**
 * Switchyard's metrics (`GET /Switchyard.Metrics`, and `GET /metrics` over TCP with
 * METRICS_ADDRESS), with the standard `process_*` ones: one instance per process, handed to the
 * parts that count (HTTP shell, reconciler, etcd client, packet filter), never a global.
 */
export class Metrics {
  readonly #registry = new Registry();
  readonly #requests: Counter;
  readonly #requestSeconds: Histogram;
  readonly #repairs: Counter;
  readonly #etcd: Counter;
  readonly #etcdSeconds: Histogram;
  readonly #firewall: Counter;
  readonly #firewallSeconds: Histogram;

  constructor(sources: MetricSources = {}) {
    const r = this.#registry;
    const info = r.gauge("switchyard_build_info", "Switchyard's version (always 1)", ["version"]);
    info.set({ version: sources.version ?? "unknown" }, 1);
    this.#requests = r.counter(
      "switchyard_requests_total",
      "Requests answered on the plugin socket, by protocol method (the route) and outcome (error: any non-200 answer)",
      ["method", "outcome"],
    );
    this.#requestSeconds = r.histogram(
      "switchyard_request_duration_seconds",
      "Time to answer a request on the plugin socket, by protocol method",
      ["method"],
    );
    const networks = r.gauge("switchyard_networks", "Networks Switchyard knows");
    const endpoints = r.gauge("switchyard_endpoints", "Endpoints (container interfaces)");
    const ports = r.gauge(
      "switchyard_published_ports",
      "Published port bindings (-p), by protocol",
      ["proto"],
    );
    const allocated = r.gauge(
      "switchyard_pool_addresses_allocated",
      "Addresses allocated in an IPAM pool (gateway and aux addresses included)",
      ["pool_id"],
    );
    const free = r.gauge(
      "switchyard_pool_addresses_free",
      "Host addresses of an IPAM pool not allocated (an approximation above 2^53 for IPv6)",
      ["pool_id"],
    );
    this.#repairs = r.counter(
      "switchyard_reconcile_repairs_total",
      "Host repairs made by reconciliation (start-up and retries), by kind and outcome",
      ["kind", "outcome"],
    );
    this.#etcd = r.counter(
      "switchyard_etcd_requests_total",
      "etcd round-trips (each over every endpoint until one answers), by operation and outcome",
      ["operation", "outcome"],
    );
    this.#etcdSeconds = r.histogram(
      "switchyard_etcd_request_duration_seconds",
      "Time of an etcd round-trip, by operation",
      ["operation"],
    );
    this.#firewall = r.counter(
      "switchyard_firewall_applies_total",
      "Packet filter applies (nftables table and iptables chain), by outcome",
      ["outcome"],
    );
    this.#firewallSeconds = r.histogram(
      "switchyard_firewall_apply_duration_seconds",
      "Time to apply the packet filter",
    );

    registerProcessMetrics(r);

    r.onCollect(() => {
      if (sources.state !== undefined) collectState(sources.state(), networks, endpoints, ports);
      if (sources.pools !== undefined) collectPools(sources.pools(), allocated, free);
    });
  }

  /**
   * A request on the plugin socket was answered. `method` is the protocol call's route
   * (`/NetworkDriver.CreateEndpoint`): the label is not "endpoint", which beside
   * `switchyard_endpoints` (container interfaces) would read as one.
   */
  request(method: string, outcome: Outcome, seconds: number): void {
    this.#requests.inc({ method, outcome });
    this.#requestSeconds.observe({ method }, seconds);
  }

  /** Reconciliation made (or failed to make) one repair of this kind. */
  repair(kind: string, outcome: Outcome): void {
    this.#repairs.inc({ kind, outcome });
  }

  /** One etcd round-trip ended. */
  etcd(operation: string, outcome: Outcome, seconds: number): void {
    this.#etcd.inc({ operation, outcome });
    this.#etcdSeconds.observe({ operation }, seconds);
  }

  /** One packet filter apply ended. */
  firewallApply(outcome: Outcome, seconds: number): void {
    this.#firewall.inc({ outcome });
    this.#firewallSeconds.observe({}, seconds);
  }

  /** Every metric in the Prometheus text format (version 0.0.4). */
  render(): string {
    return this.#registry.render();
  }
}

function collectState(
  state: Readonly<StateDocument>,
  networks: Gauge,
  endpoints: Gauge,
  ports: Gauge,
): void {
  const all = Object.values(state.endpoints);
  networks.set({}, Object.keys(state.networks).length);
  endpoints.set({}, all.length);
  ports.reset();
  // Every protocol appears, at 0 too, so a dashboard's series never vanish.
  const counts = new Map<string, number>([
    ["tcp", 0],
    ["udp", 0],
    ["sctp", 0],
  ]);
  for (const endpoint of all)
    for (const binding of endpoint.ports)
      counts.set(binding.proto, (counts.get(binding.proto) ?? 0) + 1);
  for (const [proto, count] of counts) ports.set({ proto }, count);
}

function collectPools(pools: readonly PoolInfo[], allocated: Gauge, free: Gauge): void {
  // Released pools must disappear, not keep their last value.
  allocated.reset();
  free.reset();
  for (const pool of pools) {
    allocated.set({ pool_id: pool.poolId }, pool.allocatedCount);
    free.set({ pool_id: pool.poolId }, pool.freeCount);
  }
}

/** Seconds since a `process.hrtime.bigint()` reading. */
export const secondsSince = (start: bigint): number =>
  Number(process.hrtime.bigint() - start) / 1e9;

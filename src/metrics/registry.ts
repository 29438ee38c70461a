/**
 * A small in-process metrics registry writing the Prometheus text format (version 0.0.4).
 * Switchyard needs a dozen counters, gauges and histograms; this is the part of a client
 * library it uses, with no process-wide default registry, so every test starts from zero.
 */

/** Label names to values; a metric's samples all carry the same label names. */
export type Labels = Readonly<Record<string, string>>;

/** Upper bounds (seconds) for latencies from a millisecond to ten seconds. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

const escapeHelp = (text: string): string => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabel = (text: string): string =>
  text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

/** A sample value as the text format writes it (Go's ParseFloat reads every form). */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

function formatLabels(names: readonly string[], labels: Labels, extra?: [string, string]): string {
  const pairs = names.map((name) => `${name}="${escapeLabel(labels[name] ?? "")}"`);
  if (extra !== undefined) pairs.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

/** One series per distinct label set, kept in the order first seen. */
class Series<T> {
  readonly #names: readonly string[];
  readonly #entries = new Map<string, { labels: Labels; value: T }>();

  constructor(names: readonly string[]) {
    this.#names = names;
  }

  get(labels: Labels, create: () => T): T {
    const key = this.#names.map((name) => labels[name] ?? "").join("\u0000");
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { labels: { ...labels }, value: create() };
      this.#entries.set(key, entry);
    }
    return entry.value;
  }

  entries(): { labels: Labels; value: T }[] {
    return [...this.#entries.values()];
  }

  clear(): void {
    this.#entries.clear();
  }
}

interface Metric {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  sampleLines(): string[];
}

/** One number per label set: what counters and gauges share. */
abstract class ScalarMetric implements Metric {
  abstract readonly type: "counter" | "gauge";
  protected readonly series: Series<{ value: number }>;
  readonly #labelNames: readonly string[];

  readonly name: string;
  readonly help: string;

  constructor(name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.#labelNames = labelNames;
    this.series = new Series(labelNames);
  }

  /** The current value for a label set (0 when never set). */
  value(labels: Labels = {}): number {
    return this.series.get(labels, () => ({ value: 0 })).value;
  }

  sampleLines(): string[] {
    return this.series
      .entries()
      .map(
        ({ labels, value }) =>
          `${this.name}${formatLabels(this.#labelNames, labels)} ${formatValue(value.value)}`,
      );
  }
}

/** A value that only goes up (requests, failures). */
export class Counter extends ScalarMetric {
  readonly type = "counter";

  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    super(name, help, labelNames);
    // A counter without labels exists from the start, so a rate() sees its first increase.
    if (labelNames.length === 0) this.series.get({}, () => ({ value: 0 }));
  }

  inc(labels: Labels = {}, by = 1): void {
    this.series.get(labels, () => ({ value: 0 })).value += by;
  }

  /** Copies a total kept elsewhere (the kernel's CPU time) at collect time; it never goes down. */
  setTotal(labels: Labels, total: number): void {
    const entry = this.series.get(labels, () => ({ value: 0 }));
    entry.value = Math.max(entry.value, total);
  }
}

/** A value read when scraped (addresses free, ports published): set by a collect callback. */
export class Gauge extends ScalarMetric {
  readonly type = "gauge";

  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    super(name, help, labelNames);
  }

  set(labels: Labels, value: number): void {
    this.series.get(labels, () => ({ value: 0 })).value = value;
  }

  /** Forgets every series (before a collect sets the ones that still exist). */
  reset(): void {
    this.series.clear();
  }
}

interface HistogramData {
  /** Per-bucket counts (not cumulative); the last slot is above the highest bound. */
  counts: number[];
  sum: number;
  count: number;
}

/** Observations (latencies) counted into cumulative `le` buckets, with their sum and count. */
export class Histogram implements Metric {
  readonly type = "histogram";
  readonly #labelNames: readonly string[];
  readonly #buckets: readonly number[];
  readonly #series: Series<HistogramData>;

  readonly name: string;
  readonly help: string;

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets: readonly number[] = LATENCY_BUCKETS,
  ) {
    this.name = name;
    this.help = help;
    if (labelNames.includes("le")) throw new Error(`histogram ${name} cannot have a label "le"`);
    this.#labelNames = labelNames;
    this.#buckets = [...buckets].sort((a, b) => a - b);
    this.#series = new Series(labelNames);
  }

  observe(labels: Labels, value: number): void {
    const data = this.#series.get(labels, () => ({
      counts: new Array<number>(this.#buckets.length + 1).fill(0),
      sum: 0,
      count: 0,
    }));
    let index = this.#buckets.findIndex((bound) => value <= bound);
    if (index < 0) index = this.#buckets.length;
    data.counts[index] = (data.counts[index] ?? 0) + 1;
    data.sum += value;
    data.count += 1;
  }

  sampleLines(): string[] {
    return this.#series.entries().flatMap(({ labels, value }) => {
      const lines: string[] = [];
      let cumulative = 0;
      const bounds = [...this.#buckets.map(formatValue), "+Inf"];
      bounds.forEach((bound, index) => {
        cumulative += value.counts[index] ?? 0;
        lines.push(
          `${this.name}_bucket${formatLabels(this.#labelNames, labels, ["le", bound])} ${cumulative}`,
        );
      });
      const plain = formatLabels(this.#labelNames, labels);
      lines.push(`${this.name}_sum${plain} ${formatValue(value.sum)}`);
      lines.push(`${this.name}_count${plain} ${value.count}`);
      return lines;
    });
  }
}

/** The metrics of one process, written out in registration order. */
export class Registry {
  readonly #metrics: Metric[] = [];
  readonly #collectors: (() => void)[] = [];

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames), labelNames);
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labelNames), labelNames);
  }

  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets: readonly number[] = LATENCY_BUCKETS,
  ): Histogram {
    return this.#add(new Histogram(name, help, labelNames, buckets), labelNames);
  }

  /** Runs before each render: where scrape-time gauges read the state. */
  onCollect(collect: () => void): void {
    this.#collectors.push(collect);
  }

  /** Every metric in the Prometheus text format, version 0.0.4. */
  render(): string {
    for (const collect of this.#collectors) collect();
    const lines = this.#metrics.flatMap((metric) => [
      `# HELP ${metric.name} ${escapeHelp(metric.help)}`,
      `# TYPE ${metric.name} ${metric.type}`,
      ...metric.sampleLines(),
    ]);
    return `${lines.join("\n")}\n`;
  }

  #add<T extends Metric>(metric: T, labelNames: readonly string[]): T {
    if (!NAME.test(metric.name)) throw new Error(`metric name "${metric.name}" is not valid`);
    for (const label of labelNames) {
      if (!LABEL_NAME.test(label) || label.startsWith("__"))
        throw new Error(`metric ${metric.name}: label name "${label}" is not valid`);
    }
    if (this.#metrics.some((other) => other.name === metric.name))
      throw new Error(`metric ${metric.name} is registered twice`);
    this.#metrics.push(metric);
    return metric;
  }
}

/**
 * A strict reader of the Prometheus text format (0.0.4), for tests: every line must be
 * `# HELP`, `# TYPE` or a sample of a declared metric; histograms must have cumulative buckets
 * ending in `+Inf`, equal to `_count`, and a `_sum`. Throws naming the offending line.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE = new RegExp(`^(${NAME})(\\{(.*)\\})? (\\S+)$`);
const LABEL = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest !== "") {
    const match = LABEL.exec(rest);
    if (match === null) throw new Error(`bad labels in line: ${line}`);
    const [whole, key = "", raw = ""] = match;
    labels[key] = raw.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    rest = rest.slice(whole.length);
  }
  return labels;
}

function parseValue(text: string, line: string): number {
  if (text === "+Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  if (text === "NaN") return Number.NaN;
  const value = Number(text);
  if (text === "" || Number.isNaN(value)) throw new Error(`bad value in line: ${line}`);
  return value;
}

/** The families of a text exposition, checked as described above. */
export function parsePrometheus(text: string): Map<string, Family> {
  if (!text.endsWith("\n")) throw new Error("the exposition does not end with a newline");
  const families = new Map<string, Family>();
  const familyOf = (sampleName: string): Family | undefined => {
    const direct = families.get(sampleName);
    if (direct !== undefined && direct.type !== "histogram") return direct;
    const base = sampleName.replace(/_(bucket|sum|count)$/, "");
    const histogram = families.get(base);
    return histogram?.type === "histogram" ? histogram : direct;
  };
  for (const line of text.slice(0, -1).split("\n")) {
    const help = new RegExp(`^# HELP (${NAME}) (.*)$`).exec(line);
    if (help !== null) {
      const [, name = "", description = ""] = help;
      const family = families.get(name) ?? { name, type: "untyped", help: "", samples: [] };
      family.help = description;
      families.set(name, family);
      continue;
    }
    const type = new RegExp(`^# TYPE (${NAME}) (\\S+)$`).exec(line);
    if (type !== null) {
      const [, name = "", kind = ""] = type;
      if (!TYPES.has(kind)) throw new Error(`unknown type in line: ${line}`);
      const family = families.get(name) ?? { name, type: kind, help: "", samples: [] };
      if (family.samples.length > 0) throw new Error(`TYPE after samples: ${line}`);
      family.type = kind;
      families.set(name, family);
      continue;
    }
    const sample = SAMPLE.exec(line);
    if (sample === null) throw new Error(`not HELP, TYPE or a sample: ${JSON.stringify(line)}`);
    const [, name = "", , labelText = "", valueText = ""] = sample;
    const family = familyOf(name);
    if (family === undefined) throw new Error(`sample of an undeclared metric: ${line}`);
    family.samples.push({
      name,
      labels: parseLabels(labelText, line),
      value: parseValue(valueText, line),
    });
  }
  for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
  return families;
}

function checkHistogram(family: Family): void {
  const series = new Map<string, Sample[]>();
  for (const sample of family.samples) {
    const { le: _le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    series.set(key, [...(series.get(key) ?? []), sample]);
  }
  for (const [key, samples] of series) {
    const buckets = samples.filter((sample) => sample.name === `${family.name}_bucket`);
    const count = samples.find((sample) => sample.name === `${family.name}_count`);
    const sum = samples.find((sample) => sample.name === `${family.name}_sum`);
    if (count === undefined || sum === undefined)
      throw new Error(`${family.name}${key}: no _count or _sum`);
    const bounds = buckets.map((bucket) => parseValue(bucket.labels.le ?? "", "le"));
    if (bounds.at(-1) !== Number.POSITIVE_INFINITY)
      throw new Error(`${family.name}${key}: the last bucket is not le="+Inf"`);
    for (let index = 1; index < buckets.length; index++) {
      if ((bounds[index] ?? 0) <= (bounds[index - 1] ?? 0))
        throw new Error(`${family.name}${key}: bucket bounds are not increasing`);
      if ((buckets[index]?.value ?? 0) < (buckets[index - 1]?.value ?? 0))
        throw new Error(`${family.name}${key}: buckets are not cumulative`);
    }
    if (buckets.at(-1)?.value !== count.value)
      throw new Error(`${family.name}${key}: the +Inf bucket differs from _count`);
  }
}

/** The value of the sample with exactly these labels (a subset match), or undefined. */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const family = families.get(name.replace(/_(bucket|sum|count)$/, "")) ?? families.get(name);
  return family?.samples.find(
    (sample) =>
      sample.name === name &&
      Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  )?.value;
}

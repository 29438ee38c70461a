import { readdirSync, readFileSync } from "node:fs";
import type { Registry } from "./registry.ts";

/** One reading of the process, taken at scrape time; undefined where /proc could not tell. */
export interface ProcessReading {
  /** User plus system CPU time. */
  cpuSeconds: number;
  residentBytes: number;
  virtualBytes?: number;
  openFds?: number;
  /** The soft limit on open files; +Inf when unlimited. */
  maxFds?: number;
}

/**
 * Reads the process as Prometheus client libraries do (Go's procfs, prom-client): a few system
 * calls and two small /proc files, cheap enough for every scrape. Never throws: the plugin runs
 * on Linux, but a /proc it cannot read (a test elsewhere) must not break the whole scrape.
 */
export function readProcess(): ProcessReading {
  const cpu = process.cpuUsage();
  const reading: ProcessReading = {
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    // rss() alone: memoryUsage() would also walk the V8 heap for numbers not shown here.
    residentBytes: process.memoryUsage.rss(),
  };
  const virtualBytes = tryRead(() => virtualBytesOf(readFileSync("/proc/self/stat", "utf8")));
  if (virtualBytes !== undefined) reading.virtualBytes = virtualBytes;
  // readdir holds the directory itself open while it lists it: that one is not the plugin's.
  const openFds = tryRead(() => readdirSync("/proc/self/fd").length - 1);
  if (openFds !== undefined) reading.openFds = openFds;
  const maxFds = tryRead(() => maxOpenFilesOf(readFileSync("/proc/self/limits", "utf8")));
  if (maxFds !== undefined) reading.maxFds = maxFds;
  return reading;
}

function tryRead(read: () => number | undefined): number | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/** `vsize` (field 23) of /proc/self/stat; the name in field 2 may hold spaces and parentheses. */
export function virtualBytesOf(stat: string): number | undefined {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state), so field 23 is fields[20].
  const value = Number(fields[20]);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** The soft limit of "Max open files" in /proc/self/limits; +Inf for "unlimited". */
export function maxOpenFilesOf(limits: string): number | undefined {
  const match = /^Max open files\s+(\S+)/m.exec(limits);
  if (match === null) return undefined;
  if (match[1] === "unlimited") return Number.POSITIVE_INFINITY;
  const value = Number(match[1]);
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * Registers the standard `process_*` metrics, with the names and meanings every Prometheus
 * client library gives them, so existing dashboards and alerts work unchanged.
 */
export function registerProcessMetrics(
  registry: Registry,
  read: () => ProcessReading = readProcess,
  startTimeSeconds: number = performance.timeOrigin / 1000,
): void {
  const cpu = registry.counter(
    "process_cpu_seconds_total",
    "Total user and system CPU time spent in seconds.",
  );
  const resident = registry.gauge(
    "process_resident_memory_bytes",
    "Resident memory size in bytes.",
  );
  const virtual = registry.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.");
  const openFds = registry.gauge("process_open_fds", "Number of open file descriptors.");
  const maxFds = registry.gauge("process_max_fds", "Maximum number of open file descriptors.");
  const start = registry.gauge(
    "process_start_time_seconds",
    "Start time of the process since unix epoch in seconds.",
  );
  start.set({}, startTimeSeconds);
  registry.onCollect(() => {
    const reading = read();
    cpu.setTotal({}, reading.cpuSeconds);
    resident.set({}, reading.residentBytes);
    // What could not be read is left out rather than shown as a 0 an alert would act on.
    const optional: [typeof virtual, number | undefined][] = [
      [virtual, reading.virtualBytes],
      [openFds, reading.openFds],
      [maxFds, reading.maxFds],
    ];
    for (const [gauge, value] of optional) {
      gauge.reset();
      if (value !== undefined) gauge.set({}, value);
    }
  });
}

import assert from "node:assert/strict";
import { closeSync, openSync } from "node:fs";
import { describe, test } from "node:test";
import { defaultIpamSettings, Ipam } from "../../src/ipam/ipam.ts";
import { Metrics } from "../../src/metrics/metrics.ts";
import {
  maxOpenFilesOf,
  registerProcessMetrics,
  virtualBytesOf,
} from "../../src/metrics/process.ts";
import { Registry } from "../../src/metrics/registry.ts";
import { TimedFirewall } from "../../src/metrics/timed-firewall.ts";
import { emptyState, type StateDocument } from "../../src/state/model.ts";
import { parsePrometheus, sampleValue } from "../support/prometheus.ts";
import { networkRecord } from "../support/records.ts";

describe("metrics registry (Prometheus text format)", { timeout: 10_000 }, () => {
  test("counters, gauges and histograms render as golden text", { timeout: 10_000 }, () => {
    const registry = new Registry();
    const calls = registry.counter("demo_calls_total", "Calls", ["endpoint", "outcome"]);
    const idle = registry.counter("demo_idle_total", "Never increased");
    const gauge = registry.gauge("demo_free", "Free things", ["pool"]);
    const latency = registry.histogram("demo_seconds", "Latency", ["endpoint"], [0.1, 1]);
    calls.inc({ endpoint: "/A", outcome: "ok" });
    calls.inc({ endpoint: "/A", outcome: "ok" });
    calls.inc({ endpoint: "/B", outcome: "error" });
    gauge.set({ pool: "p1" }, 3);
    latency.observe({ endpoint: "/A" }, 0.05);
    latency.observe({ endpoint: "/A" }, 0.5);
    latency.observe({ endpoint: "/A" }, 7);
    assert.equal(idle.value(), 0);
    assert.equal(
      registry.render(),
      [
        "# HELP demo_calls_total Calls",
        "# TYPE demo_calls_total counter",
        'demo_calls_total{endpoint="/A",outcome="ok"} 2',
        'demo_calls_total{endpoint="/B",outcome="error"} 1',
        "# HELP demo_idle_total Never increased",
        "# TYPE demo_idle_total counter",
        "demo_idle_total 0",
        "# HELP demo_free Free things",
        "# TYPE demo_free gauge",
        'demo_free{pool="p1"} 3',
        "# HELP demo_seconds Latency",
        "# TYPE demo_seconds histogram",
        'demo_seconds_bucket{endpoint="/A",le="0.1"} 1',
        'demo_seconds_bucket{endpoint="/A",le="1"} 2',
        'demo_seconds_bucket{endpoint="/A",le="+Inf"} 3',
        'demo_seconds_sum{endpoint="/A"} 7.55',
        'demo_seconds_count{endpoint="/A"} 3',
        "",
      ].join("\n"),
    );
  });

  test("label values and help text are escaped", { timeout: 10_000 }, () => {
    const registry = new Registry();
    registry.counter("demo_total", "a \\ help\nline", ["path"]).inc({ path: 'a"b\\c\nd' });
    const text = registry.render();
    assert.match(text, /^# HELP demo_total a \\\\ help\\nline$/m);
    assert.match(text, /^demo_total\{path="a\\"b\\\\c\\nd"\} 1$/m);
    const families = parsePrometheus(text);
    assert.equal(sampleValue(families, "demo_total", { path: 'a"b\\c\nd' }), 1);
  });

  test("invalid and duplicate names are refused", { timeout: 10_000 }, () => {
    const registry = new Registry();
    registry.counter("ok_total", "fine");
    assert.throws(() => registry.counter("ok_total", "again"), /registered twice/);
    assert.throws(() => registry.gauge("bad-name", "x"), /not valid/);
    assert.throws(() => registry.gauge("fine", "x", ["__reserved"]), /not valid/);
    assert.throws(() => registry.histogram("h", "x", ["le"]), /cannot have a label "le"/);
  });

  test("gauges reset before collection forget series that went", { timeout: 10_000 }, () => {
    const registry = new Registry();
    const gauge = registry.gauge("demo_pools", "Pools", ["pool"]);
    let pools = ["a", "b"];
    registry.onCollect(() => {
      gauge.reset();
      for (const pool of pools) gauge.set({ pool }, 1);
    });
    assert.match(registry.render(), /pool="b"/);
    pools = ["a"];
    assert.doesNotMatch(registry.render(), /pool="b"/);
  });
});

/** A state with one network, two endpoints and three published ports. */
function stateWithPorts(): StateDocument {
  const state = emptyState();
  state.networks.n1 = networkRecord("n1", "sy-n1", "10.15.20.0/24");
  const endpoint = (id: string, ports: StateDocument["endpoints"][string]["ports"]) => ({
    id,
    networkId: "n1",
    hostVeth: `v${id}`,
    peerVeth: `p${id}`,
    mac: "02:42:0a:0f:14:02",
    address: "10.15.20.2/24",
    ports,
  });
  const tcp = (port: number) => ({
    proto: "tcp" as const,
    containerPort: 80,
    hostIp: "",
    hostPort: port,
    hostPortEnd: port,
  });
  state.endpoints.e1 = endpoint("e1", [tcp(8081), { ...tcp(5353), proto: "udp" }]);
  state.endpoints.e2 = endpoint("e2", [tcp(8082)]);
  return state;
}

describe("Switchyard metrics", { timeout: 10_000 }, () => {
  test("scrape-time gauges read the state and the pools", { timeout: 10_000 }, () => {
    const ipam = new Ipam(defaultIpamSettings());
    const { poolId } = ipam.requestPool({
      addressSpace: "LocalDefault",
      pool: "10.15.20.0/24",
      v6: false,
    });
    ipam.requestAddress(poolId, { gateway: true });
    ipam.requestAddress(poolId, {});
    const metrics = new Metrics({
      state: stateWithPorts,
      pools: () => ipam.pools(),
      version: "1.2.3",
    });
    const families = parsePrometheus(metrics.render());
    assert.equal(sampleValue(families, "switchyard_build_info", { version: "1.2.3" }), 1);
    assert.equal(sampleValue(families, "switchyard_networks"), 1);
    assert.equal(sampleValue(families, "switchyard_endpoints"), 2);
    assert.equal(sampleValue(families, "switchyard_published_ports", { proto: "tcp" }), 2);
    assert.equal(sampleValue(families, "switchyard_published_ports", { proto: "udp" }), 1);
    assert.equal(sampleValue(families, "switchyard_published_ports", { proto: "sctp" }), 0);
    assert.equal(
      sampleValue(families, "switchyard_pool_addresses_allocated", { pool_id: poolId }),
      2,
    );
    assert.equal(sampleValue(families, "switchyard_pool_addresses_free", { pool_id: poolId }), 252);
  });

  test("requests, repairs, etcd and firewall applies are counted", { timeout: 10_000 }, () => {
    const metrics = new Metrics();
    metrics.request("/NetworkDriver.Join", "ok", 0.002);
    metrics.request("/NetworkDriver.Join", "error", 0.2);
    metrics.repair("reattach", "ok");
    metrics.etcd("kv/txn", "error", 3);
    metrics.firewallApply("ok", 0.04);
    const families = parsePrometheus(metrics.render());
    const join = { method: "/NetworkDriver.Join" };
    assert.equal(sampleValue(families, "switchyard_requests_total", { ...join, outcome: "ok" }), 1);
    assert.equal(
      sampleValue(families, "switchyard_requests_total", { ...join, outcome: "error" }),
      1,
    );
    assert.equal(sampleValue(families, "switchyard_request_duration_seconds_count", join), 2);
    assert.equal(
      sampleValue(families, "switchyard_request_duration_seconds_bucket", {
        ...join,
        le: "0.0025",
      }),
      1,
    );
    assert.equal(
      sampleValue(families, "switchyard_reconcile_repairs_total", {
        kind: "reattach",
        outcome: "ok",
      }),
      1,
    );
    assert.equal(
      sampleValue(families, "switchyard_etcd_requests_total", {
        operation: "kv/txn",
        outcome: "error",
      }),
      1,
    );
    assert.equal(sampleValue(families, "switchyard_firewall_applies_total", { outcome: "ok" }), 1);
    assert.equal(sampleValue(families, "switchyard_firewall_apply_duration_seconds_count"), 1);
    // No sources: no state gauges, version unknown.
    assert.equal(sampleValue(families, "switchyard_build_info", { version: "unknown" }), 1);
    assert.equal(sampleValue(families, "switchyard_networks"), undefined);
  });

  test("a timed firewall counts failed applies and still throws", { timeout: 10_000 }, async () => {
    const metrics = new Metrics();
    let fail = false;
    const firewall = new TimedFirewall(
      {
        apply: async () => {
          if (fail) throw new Error("nft: syntax error");
        },
        clear: async () => {},
      },
      metrics,
    );
    await firewall.apply(emptyState());
    fail = true;
    await assert.rejects(firewall.apply(emptyState()), /syntax error/);
    const families = parsePrometheus(metrics.render());
    assert.equal(sampleValue(families, "switchyard_firewall_applies_total", { outcome: "ok" }), 1);
    assert.equal(
      sampleValue(families, "switchyard_firewall_applies_total", { outcome: "error" }),
      1,
    );
    assert.equal(sampleValue(families, "switchyard_firewall_apply_duration_seconds_count"), 2);
  });
});

describe("process metrics (as Prometheus client libraries name them)", { timeout: 10_000 }, () => {
  const value = (families: ReturnType<typeof parsePrometheus>, name: string): number => {
    const found = sampleValue(families, name);
    assert.ok(found !== undefined, `${name} is missing`);
    return found;
  };

  test("are present, typed and sane for this process", { timeout: 10_000 }, () => {
    const families = parsePrometheus(new Metrics().render());
    assert.equal(families.get("process_cpu_seconds_total")?.type, "counter");
    for (const name of [
      "process_resident_memory_bytes",
      "process_virtual_memory_bytes",
      "process_open_fds",
      "process_max_fds",
      "process_start_time_seconds",
    ])
      assert.equal(families.get(name)?.type, "gauge", name);
    const resident = value(families, "process_resident_memory_bytes");
    assert.ok(resident > 1e6 && resident < 64e9, `resident ${resident}`);
    assert.ok(value(families, "process_virtual_memory_bytes") >= resident);
    const cpu = value(families, "process_cpu_seconds_total");
    assert.ok(cpu > 0 && cpu < process.uptime() * 1024, `cpu ${cpu}`);
    const open = value(families, "process_open_fds");
    assert.ok(open >= 3 && open <= value(families, "process_max_fds"), `open fds ${open}`);
    const start = value(families, "process_start_time_seconds");
    const expected = Date.now() / 1000 - process.uptime();
    assert.ok(Math.abs(start - expected) < 2, `start ${start}, expected about ${expected}`);
  });

  test("are read at each scrape", { timeout: 10_000 }, () => {
    const metrics = new Metrics();
    const before = parsePrometheus(metrics.render());
    // Synchronous, so nothing else in this process opens or closes a descriptor meanwhile.
    const fd = openSync(new URL(import.meta.url), "r");
    let during: ReturnType<typeof parsePrometheus>;
    try {
      during = parsePrometheus(metrics.render());
    } finally {
      closeSync(fd);
    }
    assert.equal(value(during, "process_open_fds"), value(before, "process_open_fds") + 1);
    const spinUntil = process.cpuUsage().user + 20_000;
    while (process.cpuUsage().user < spinUntil);
    const after = parsePrometheus(metrics.render());
    assert.ok(
      value(after, "process_cpu_seconds_total") >=
        value(before, "process_cpu_seconds_total") + 0.02,
    );
  });

  test("what /proc cannot tell is left out, not shown as 0", { timeout: 10_000 }, () => {
    const registry = new Registry();
    registerProcessMetrics(
      registry,
      () => ({ cpuSeconds: 1.5, residentBytes: 4096 }),
      1_700_000_000,
    );
    let families = parsePrometheus(registry.render());
    assert.equal(sampleValue(families, "process_cpu_seconds_total"), 1.5);
    assert.equal(sampleValue(families, "process_resident_memory_bytes"), 4096);
    assert.equal(sampleValue(families, "process_start_time_seconds"), 1_700_000_000);
    assert.equal(sampleValue(families, "process_open_fds"), undefined);
    assert.equal(sampleValue(families, "process_virtual_memory_bytes"), undefined);
    const unlimited = new Registry();
    registerProcessMetrics(unlimited, () => ({
      cpuSeconds: 0,
      residentBytes: 1,
      maxFds: Number.POSITIVE_INFINITY,
    }));
    families = parsePrometheus(unlimited.render());
    assert.equal(sampleValue(families, "process_max_fds"), Number.POSITIVE_INFINITY);
  });

  test("/proc/self/stat and /proc/self/limits are parsed", { timeout: 10_000 }, () => {
    // A command name may hold spaces and parentheses: fields count from the last ")".
    const stat =
      "4242 (node (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 50 10 0 0 20 0 11 0 1000 1234567168 9000 18446744073709551615";
    assert.equal(virtualBytesOf(stat), 1234567168);
    assert.equal(virtualBytesOf("garbage"), undefined);
    const limits = [
      "Limit                     Soft Limit           Hard Limit           Units     ",
      "Max processes             96367                96367                processes ",
      "Max open files            1024                 524288               files     ",
    ].join("\n");
    assert.equal(maxOpenFilesOf(limits), 1024);
    assert.equal(
      maxOpenFilesOf("Max open files            unlimited            unlimited            files"),
      Number.POSITIVE_INFINITY,
    );
    assert.equal(maxOpenFilesOf("Max processes 10 10 processes"), undefined);
  });
});

describe("the test's Prometheus reader", { timeout: 10_000 }, () => {
  test("rejects what is not the text format", { timeout: 10_000 }, () => {
    assert.throws(() => parsePrometheus("no_type 1\n"), /undeclared/);
    assert.throws(() => parsePrometheus("# TYPE x counter\nx one\n"), /bad value/);
    assert.throws(() => parsePrometheus("# TYPE x counter\nx 1"), /newline/);
    assert.throws(
      () =>
        parsePrometheus(
          '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
        ),
      /cumulative/,
    );
    assert.throws(
      () => parsePrometheus('# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'),
      /\+Inf/,
    );
  });
});

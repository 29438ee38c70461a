import assert from "node:assert/strict";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, it } from "node:test";
import { type Logger, pino } from "pino";
import { Metrics } from "../../src/metrics/metrics.ts";
import { serveMetrics } from "../../src/metrics/metrics-listener.ts";
import { parsePrometheus, sampleValue } from "../support/prometheus.ts";

const TIMEOUT = { timeout: 10_000 };

/** A logger whose lines the test can read. */
function recordingLogger(): {
  logger: Logger;
  lines: () => Record<string, unknown>[];
} {
  const lines: string[] = [];
  const logger: Logger = pino({ level: "info" }, { write: (line: string) => lines.push(line) });
  return { logger, lines: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

const servers: Server[] = [];
after(async () => {
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  }
});

async function listening(metrics: Metrics): Promise<string> {
  const { logger } = recordingLogger();
  const server = await serveMetrics({ host: "127.0.0.1", port: 0 }, metrics, logger);
  assert.ok(server !== undefined, "the listener did not start");
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("metrics over TCP (METRICS_ADDRESS)", () => {
  it("GET /metrics answers the same Prometheus text as the plugin socket", TIMEOUT, async () => {
    const metrics = new Metrics({ version: "9.9.9" });
    metrics.request("/NetworkDriver.Join", "ok", 0.01);
    const base = await listening(metrics);
    for (const path of ["/metrics", "/metrics?module=switchyard"]) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, 200);
      assert.equal(
        response.headers.get("content-type"),
        "text/plain; version=0.0.4; charset=utf-8",
      );
      const families = parsePrometheus(await response.text());
      assert.equal(sampleValue(families, "switchyard_build_info", { version: "9.9.9" }), 1);
      assert.ok(families.has("switchyard_requests_total"));
    }
  });

  it("answers 404 to any other path or method", TIMEOUT, async () => {
    const base = await listening(new Metrics());
    const cases: [string, string][] = [
      ["POST", "/metrics"],
      ["PUT", "/metrics"],
      ["DELETE", "/metrics"],
      ["HEAD", "/metrics"],
      ["GET", "/"],
      ["GET", "/metrics/"],
      ["GET", "/Switchyard.Metrics"],
      ["GET", "/Switchyard.Status"],
      ["POST", "/NetworkDriver.Join"],
      ["POST", "/Plugin.Activate"],
    ];
    for (const [method, path] of cases) {
      const response = await fetch(`${base}${path}`, {
        method,
        ...(method === "POST" || method === "PUT" ? { body: "{}" } : {}),
      });
      assert.equal(response.status, 404, `${method} ${path}`);
      await response.arrayBuffer();
    }
  });

  it("a port in use is logged and never rejects (the plugin keeps serving)", TIMEOUT, async () => {
    const base = await listening(new Metrics());
    const port = Number(new URL(base).port);
    const { logger, lines } = recordingLogger();
    const second = await serveMetrics({ host: "127.0.0.1", port }, new Metrics(), logger);
    assert.equal(second, undefined);
    const error = lines().find((line) => line.level === 50);
    assert.match(String(error?.msg), new RegExp(`METRICS_ADDRESS=127\\.0\\.0\\.1:${port}`));
    assert.match(JSON.stringify(error?.err), /EADDRINUSE/);
    // The first listener is untouched.
    assert.equal((await fetch(`${base}/metrics`)).status, 200);
  });
});

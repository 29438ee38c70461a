import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import { formatListenAddress, type ListenAddress } from "../settings.ts";
import type { Metrics } from "./metrics.ts";

/** What the plugin socket's `/Switchyard.Metrics` answers with too. */
const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A scraper that stalls is cut off rather than holding a socket of the plugin. */
const REQUEST_TIMEOUT_MS = 10_000;
/** More than any sane number of scrapers; a flood of connections cannot exhaust descriptors. */
const MAX_CONNECTIONS = 32;

/**
 * Serves `GET /metrics` (and nothing else) over TCP, for a Prometheus that cannot reach the
 * plugin's Unix socket (METRICS_ADDRESS). Plain node:http rather than a second Fastify: one
 * fixed route needs no router, schemas or hooks; node:http is loaded already (Fastify is built
 * on it), so this costs one listening socket; and no protocol route (`/NetworkDriver.*`) can
 * ever reach the network through a shared app. Never rejects: a listener that cannot start (a
 * port in use, an address this host does not have) is logged, and the plugin goes on serving
 * dockerd; undefined then.
 */
export function serveMetrics(
  address: ListenAddress,
  metrics: Metrics,
  logger: Logger,
): Promise<Server | undefined> {
  const where = formatListenAddress(address);
  const server = createServer(
    { requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS },
    (request, response) => {
      // A query string (Prometheus' `params`) does not make another path.
      const path = (request.url ?? "").split("?", 1)[0];
      if (request.method !== "GET" || path !== "/metrics") {
        response
          .writeHead(404, { "content-type": "text/plain; charset=utf-8" })
          .end("only GET /metrics is served here\n");
        return;
      }
      let body: string;
      try {
        body = metrics.render();
      } catch (error) {
        logger.error({ err: error }, "cannot render the metrics");
        response.writeHead(500).end();
        return;
      }
      response
        .writeHead(200, { "content-type": CONTENT_TYPE, "content-length": Buffer.byteLength(body) })
        .end(body);
    },
  );
  server.maxConnections = MAX_CONNECTIONS;
  server.on("clientError", (_error, socket) => socket.destroy());
  return new Promise((resolve) => {
    const failed = (error: Error): void => {
      logger.error(
        { err: error, metricsAddress: where },
        `cannot serve metrics on METRICS_ADDRESS=${where}; the plugin goes on without them`,
      );
      server.close();
      resolve(undefined);
    };
    server.once("error", failed);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off("error", failed);
      // Later errors (an accept failing for want of descriptors) would otherwise end the process.
      server.on("error", (error) =>
        logger.error({ err: error, metricsAddress: where }, "metrics listener error"),
      );
      // The plugin socket keeps the process alive; this listener never should on its own.
      server.unref();
      logger.info({ metricsAddress: where }, "serving GET /metrics over TCP");
      resolve(server);
    });
  });
}

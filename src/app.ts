import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { Logger } from "pino";
import type { IpamDriver } from "./driver/ipam-driver.ts";
import type { NetworkDriver } from "./driver/network-driver.ts";
import { SwitchyardError } from "./errors.ts";
import type { Metrics } from "./metrics/metrics.ts";
import { registerIpamRoutes } from "./routes/ipam-driver.ts";
import { registerNetworkRoutes } from "./routes/network-driver.ts";
import { registerPluginRoutes } from "./routes/plugin.ts";
import { registerStatusRoutes } from "./routes/status.ts";
import type { StateDocument } from "./state/model.ts";

/** What the HTTP shell needs: the two services, what the status views read, metrics, a logger. */
export interface AppDeps {
  network: NetworkDriver;
  ipam: IpamDriver;
  /** The committed state, which `/Switchyard.Status` shows. */
  state: () => Readonly<StateDocument>;
  /** Counts every request; rendered at `/Switchyard.Metrics`. */
  metrics: Metrics;
  /** Host conditions that break networking, which `/Switchyard.Status` shows first. */
  warnings?: () => string[];
  logger: Logger;
  /** Largest request body accepted; Docker's requests are a few KB. */
  bodyLimit?: number;
}

declare module "fastify" {
  interface FastifyRequest {
    failure?: string;
  }
}

/** IDs worth a log line: whichever of these the body carries. */
function idsOf(request: FastifyRequest): Record<string, string> {
  const body = request.body;
  const ids: Record<string, string> = {};
  if (typeof body !== "object" || body === null) return ids;
  for (const key of ["NetworkID", "EndpointID", "PoolID", "Pool", "Address"]) {
    const value = (body as Record<string, unknown>)[key];
    if (typeof value === "string" && value !== "") ids[key] = value.slice(0, 64);
  }
  return ids;
}

/** Builds the plugin's HTTP app: both protocols, errors as `{"Err": …}`, one log line per call. */
export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Fastify's own per-request lines are replaced by the one line per call below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimit ?? 1024 * 1024,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });

  // dockerd sends no Content-Type (or a vendor one) and empty bodies for some calls.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (_request, body, done) => {
    const text = String(body).trim();
    if (text === "") {
      done(null, {});
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (error) {
      done(
        new SwitchyardError(
          "BadRequest",
          `request body is not valid JSON: ${(error as Error).message}`,
        ),
        undefined,
      );
    }
  });
  // Requests with no body at all (no Content-Length) skip the parser; treat them as `{}`.
  app.addHook("preValidation", async (request) => {
    if (request.body === undefined || request.body === null) request.body = {};
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    let message: string;
    if (error instanceof SwitchyardError) {
      message = error.message;
    } else if (error.validation !== undefined) {
      message = `invalid request to ${request.url}: ${error.message.replace(/^body\/?/, "")}`;
    } else if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      message = `request body is larger than ${deps.bodyLimit ?? 1024 * 1024} bytes`;
    } else if (error.statusCode === 400) {
      message = `bad request to ${request.url}: ${error.message}`;
    } else {
      message = `internal error handling ${request.url}: ${error.message}`;
      request.log.error({ err: error }, "unexpected error");
    }
    request.failure = message;
    // Any non-200 makes dockerd read Err; 404 would mean "not implemented", so never use it here.
    void reply.code(500).send({ Err: message });
  });

  app.setNotFoundHandler((request, reply) => {
    request.failure = `${request.method} ${request.url} is not an endpoint of Switchyard`;
    void reply.code(404).send({ Err: request.failure });
  });

  app.addHook("onResponse", async (request, reply) => {
    // The route, not the URL: unknown paths and query strings must not each make a series.
    deps.metrics.request(
      request.routeOptions.url ?? "unknown",
      request.failure === undefined ? "ok" : "error",
      reply.elapsedTime / 1000,
    );
    const line = {
      endpoint: request.url,
      ...idsOf(request),
      status: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime * 10) / 10,
    };
    // At trace level the whole request is logged: what dockerd really sends, for debugging.
    if (deps.logger.isLevelEnabled("trace"))
      request.log.trace({ ...line, body: request.body }, "request");
    if (request.failure === undefined) request.log.info(line, "ok");
    else request.log.warn({ ...line, err: request.failure }, "failed");
  });

  registerPluginRoutes(app);
  registerNetworkRoutes(app, deps.network);
  registerIpamRoutes(app, deps.ipam);
  registerStatusRoutes(app, {
    state: deps.state,
    metrics: deps.metrics,
    warnings: deps.warnings ?? (() => []),
  });
  return app;
}

import type { FastifyInstance } from "fastify";
import type { Metrics } from "../metrics/metrics.ts";
import type { StateDocument } from "../state/model.ts";
import { namesFromInspect } from "../status/names.ts";
import { statusTables } from "../status/table.ts";
import { statusView } from "../status/view.ts";

/** What the read-only routes read: the committed state and the metrics. */
export interface StatusDeps {
  state: () => Readonly<StateDocument>;
  metrics: Metrics;
  /** Host conditions that break networking (e.g. an iptables FORWARD DROP under nftables). */
  warnings: () => string[];
}

/** `docker network inspect` of every network on a busy host fits easily. */
const STATUS_BODY_LIMIT = 16 * 1024 * 1024;

const statusQuery = {
  type: "object",
  properties: { format: { type: "string", enum: ["json", "table"] } },
} as const;

/**
 * Routes outside Docker's protocols (dockerd never calls them):
 * - `/Switchyard.Status` (GET or POST): what Docker cannot show for a remote driver (bridges,
 *   host veths, published ports), as JSON or, with `?format=table`, as tables. A POST body
 *   holding `docker network inspect` output adds Docker's container and network names.
 * - `GET /Switchyard.Metrics`: the metrics in the Prometheus text format.
 */
export function registerStatusRoutes(app: FastifyInstance, deps: StatusDeps): void {
  app.route<{ Querystring: { format?: "json" | "table" } }>({
    method: ["GET", "POST"],
    url: "/Switchyard.Status",
    schema: { querystring: statusQuery },
    bodyLimit: STATUS_BODY_LIMIT,
    handler: async (request, reply) => {
      const names = namesFromInspect(request.body);
      const warnings = deps.warnings();
      if (request.query.format !== "table") return { warnings, ...statusView(deps.state(), names) };
      const lines = warnings.map((warning) => `WARNING: ${warning}\n`).join("");
      return reply
        .type("text/plain; charset=utf-8")
        .send(`${lines}${lines === "" ? "" : "\n"}${statusTables(deps.state(), names)}`);
    },
  });
  app.get("/Switchyard.Metrics", async (_request, reply) =>
    reply.type("text/plain; version=0.0.4; charset=utf-8").send(deps.metrics.render()),
  );
}

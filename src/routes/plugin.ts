import type { FastifyInstance } from "fastify";
import { emptyBody } from "../protocol/schemas.ts";

/** `/Plugin.Activate`: managed plugins never get it, but legacy discovery does. */
export function registerPluginRoutes(app: FastifyInstance): void {
  app.post("/Plugin.Activate", { schema: { body: emptyBody } }, async () => ({
    Implements: ["NetworkDriver", "IpamDriver"],
  }));
}

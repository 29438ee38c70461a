import type { FastifyInstance } from "fastify";

/**
 * `/Switchyard.Status`: a read-only view of what Docker cannot show for a remote driver (the
 * bridge each network uses, endpoints' host veths, published ports). Not part of Docker's
 * protocols; dockerd never calls it.
 */
export function registerStatusRoutes(app: FastifyInstance, status: () => unknown): void {
  const handler = async () => status();
  app.get("/Switchyard.Status", handler);
  app.post("/Switchyard.Status", handler);
}

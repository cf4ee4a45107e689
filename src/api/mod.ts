/** The HTTP API (fastify): ingest, achievements, health, OpenAPI. */
export { buildApi } from "./server.ts";
export { declaredRoutes } from "./auth.ts";

/** The HTTP API (fastify): ingest, achievements, health, OpenAPI. */
export * from "./context.ts";
export * from "./server.ts";
export { declaredRoutes, type Access, type DeclaredRoute, type Principal } from "./auth.ts";

import { createServer } from "node:http";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerFactory } from "fastify";
import type { Logger } from "../util/log.ts";
import { achievementRoutes } from "./achievements.ts";
import { installAuth } from "./auth.ts";
import { dlqRoutes } from "./dlq.ts";
import { keyRoutes } from "./keys.ts";
import { tenantRoutes } from "./tenants.ts";
import { ruleRoutes } from "./rules.ts";
import type { ApiContext } from "./context.ts";
import { eventRoutes } from "./events.ts";
import { healthRoutes } from "./health.ts";
import { openApiDocument } from "./openapi.ts";

/**
 * Builds the HTTP API (not listening yet). Every route declares who may
 * use it (see {@link installAuth}); a request must arrive whole within
 * `http.requestTimeout`, so a client that sends headers and never a body
 * is cut off within about a second of that.
 */
export async function buildApi(ctx: ApiContext, log: Logger): Promise<FastifyInstance> {
  const timeout = ctx.config.http.requestTimeout;
  // Node checks request timeouts every connectionsCheckingInterval (30 s by default): check every second instead.
  const serverFactory: FastifyServerFactory = (handler) =>
    createServer({ requestTimeout: timeout, headersTimeout: timeout, connectionsCheckingInterval: 1000, keepAliveTimeout: 5000 }, handler);
  const app = Fastify({
    // Request logs are noise at this rate; errors are logged by the handler.
    loggerInstance: log.child({ component: "api" }, { level: "warn" }) as FastifyBaseLogger,
    // A full batch of maximal events, plus JSON framing.
    bodyLimit: ctx.config.http.maxBatch * ctx.config.events.maxBytes + 65_536,
    serverFactory,
  });
  app.setErrorHandler((err: { statusCode?: number; code?: string; message: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) log.error({ err }, "request failed");
    const error = status === 413 ? "body_too_large" : status === 415 ? "unsupported_media_type" : status === 408 ? "request_timeout" : status >= 500 ? "internal" : "bad_request";
    return reply.code(status).send({ error, message: err.message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: "not_found", message: `no route ${req.method} ${req.url}` }));
  await installAuth(app, ctx.keys, ctx.config, log);
  const doc = openApiDocument(ctx.config.http.maxBatch);
  app.get("/openapi.json", { config: { access: { public: true } } }, async () => doc);
  eventRoutes(app, ctx);
  achievementRoutes(app, ctx);
  healthRoutes(app, ctx);
  dlqRoutes(app, ctx);
  ruleRoutes(app, ctx);
  keyRoutes(app, ctx);
  tenantRoutes(app, ctx);
  return app;
}

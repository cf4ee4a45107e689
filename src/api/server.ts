import { createServer } from "node:http";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerFactory } from "fastify";
import { isCasFailure, isTransient } from "../nats/mod.ts";
import { CorruptStateError } from "../state/mod.ts";
import type { Logger } from "../util/log.ts";
import { achievementRoutes } from "./achievements.ts";
import { installAuth } from "./auth.ts";
import { BodyError, installJsonParser } from "./body.ts";
import { dlqRoutes } from "./dlq.ts";
import { keyRoutes } from "./keys.ts";
import { tenantRoutes } from "./tenants.ts";
import { ruleRoutes } from "./rules.ts";
import { webhookRoutes } from "./webhooks.ts";
import type { ApiContext } from "./context.ts";
import { eventRoutes } from "./events.ts";
import { healthRoutes } from "./health.ts";
import { historyRoutes } from "./history.ts";
import { HistoryRuns } from "./history-runs.ts";
import { installDocs } from "./docs.ts";
import { metricsRoutes } from "./metrics.ts";
import { unlockStreamRoutes } from "./unlocks.ts";
import { dashboardPageRoutes } from "./dashboard-page.ts";

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
    // Bounded before it is read whole: a body is parsed on the event loop the workers share.
    bodyLimit: ctx.config.http.maxBodyBytes,
    // The NATS path reads these keys with JSON.parse as ordinary keys; so does the HTTP parser (installJsonParser).
    onProtoPoisoning: "ignore",
    onConstructorPoisoning: "ignore",
    serverFactory,
  });
  app.setErrorHandler((err: { statusCode?: number; code?: string; message: string }, _req, reply) => {
    // NATS unreachable, slow or electing a leader: the request may succeed shortly; say so, never a bare 500.
    if (!err.statusCode && isTransient(err)) {
      log.warn({ err: err.message }, "NATS did not answer a request in time");
      reply.header("retry-after", "1");
      return reply.code(503).send({ error: "unavailable", message: `NATS did not answer in time (${err.message}); retry shortly` });
    }
    // Lost a compare-and-set race its retries did not win (many writers at once): asking again will.
    if (!err.statusCode && isCasFailure(err)) {
      reply.header("retry-after", "1");
      return reply.code(503).send({ error: "unavailable", message: `the record changed while it was being written (${err.message}); retry shortly` });
    }
    if (err instanceof CorruptStateError) {
      log.error({ key: err.key, err: err.message }, "a user's stored state cannot be read");
      return reply.code(500).send({ error: "corrupt_state", message: err.message });
    }
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) log.error({ err }, "request failed");
    const error = err instanceof BodyError ? err.code : status === 413 ? "body_too_large" : status === 415 ? "unsupported_media_type" : status === 408 ? "request_timeout" : status >= 500 ? "internal" : "bad_request";
    return reply.code(status).send({ error, message: err.message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ error: "not_found", message: `no route ${req.method} ${req.url}` }));
  await installAuth(app, ctx.keys, ctx.config, log, ctx.stats, ctx.streamTokens);
  // Counted by route pattern (bounded), never by raw URL.
  const metrics = ctx.metrics;
  if (metrics) app.addHook("onResponse", async (req, reply) => metrics.http(req.routeOptions.url ?? "(no route)", req.method, reply.statusCode, reply.elapsedTime / 1000));
  installJsonParser(app, { maxDepth: ctx.config.http.maxDepth, dlq: ctx.dlq, log });
  await installDocs(app);
  app.get("/openapi.json", { config: { access: { public: true } }, schema: { summary: "This API's OpenAPI 3.1 document", tags: ["meta"] } }, async () => app.swagger());
  // Reads of the events log (history runs, as-of answers) share one bound per process.
  const runs = new HistoryRuns();
  eventRoutes(app, ctx);
  achievementRoutes(app, ctx, runs);
  healthRoutes(app, ctx);
  dlqRoutes(app, ctx);
  ruleRoutes(app, ctx);
  keyRoutes(app, ctx);
  tenantRoutes(app, ctx);
  webhookRoutes(app, ctx);
  historyRoutes(app, ctx, runs);
  metricsRoutes(app, ctx);
  unlockStreamRoutes(app, ctx);
  dashboardPageRoutes(app);
  return app;
}

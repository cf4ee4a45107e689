import type { FastifyInstance, FastifyReply } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ID_TOKEN } from "../events/mod.ts";
import { WEBHOOK_LOG_PER_WEBHOOK } from "../nats/mod.ts";
import { MAX_FILTER, MAX_URL, WEBHOOK_ID, WebhookDeadLetterNotFoundError, WebhookDisabledError, WebhookRequestError, webhookView, type WebhookRegistry } from "../notify/webhooks/mod.ts";
import { ErrorJson } from "./docs.ts";
import { pageQuery, positiveInt } from "./query.ts";

const ACCESS = { access: { scope: Scopes.Webhooks, tenant: "param" as const } };
const tags = ["webhooks"];
// Documentation: the handlers check every input themselves (docs.ts turns schema validation off), with the same bounds.
const idParams = { type: "object", properties: { tenant: { type: "string" }, id: { type: "string", pattern: WEBHOOK_ID.source, description: "wh_ and 16 hex characters" } } };
const notFound = { 404: { description: "no such webhook for this tenant", ...ErrorJson } };
const webhookBody = {
  type: "object",
  properties: {
    url: { type: "string", maxLength: MAX_URL, description: "https:// or http:// URL whose host resolves to public addresses only (unless webhooks.allowPrivate)" },
    achievements: { type: ["array", "null"], maxItems: MAX_FILTER, items: { type: "string" }, description: "only unlocks of these achievements (leave out, or null, for every unlock)" },
    enabled: { type: "boolean" },
    backfill: { type: "boolean", description: "backfilled unlocks too (marked backfill: true); by default they stay quiet" },
  },
};

/**
 * A tenant's webhooks (scope `webhooks`, or an admin key): register one (the
 * answer holds its signing secret, shown this once), list, show, change
 * (URL, filter, enabled), remove; its delivery log; its dead letters and
 * their redelivery. And, for an admin key, the dead letters of every
 * webhook of every tenant (the dashboard's console).
 */
export function webhookRoutes(app: FastifyInstance, ctx: { webhooks: WebhookRegistry }): void {
  const bad = (reply: FastifyReply, message: string) => reply.code(400).send({ error: "bad_request", message });
  const missing = (reply: FastifyReply, tenant: string, id: string) => reply.code(404).send({ error: "not_found", message: `tenant ${tenant} has no webhook ${id}` });
  const refused = (reply: FastifyReply, err: unknown) => {
    if (err instanceof WebhookRequestError) return bad(reply, err.message);
    throw err;
  };
  type P = { Params: { tenant: string; id: string } };
  const base = "/v1/tenants/:tenant/webhooks";

  app.post<{ Params: { tenant: string } }>(base, { config: ACCESS, schema: { summary: "Register a webhook (the answer holds its signing secret, shown this once)", tags, body: { ...webhookBody, required: ["url"] }, response: { 201: { description: "the webhook and its secret (whsec_…): store it now, it is never shown again", type: "object" } } } }, async (req, reply) => {
    const { tenant } = req.params;
    try {
      const w = await ctx.webhooks.create(tenant, req.body);
      return reply.code(201).send({ ...webhookView(w), secret: w.secret, note: "store the secret now: it is not shown again; verify each delivery's webhook-signature with it (Standard Webhooks)" });
    } catch (err) {
      return refused(reply, err);
    }
  });
  app.get<{ Params: { tenant: string } }>(base, { config: ACCESS, schema: { summary: "A tenant's webhooks (never a secret)", tags, response: { 200: { description: "{ webhooks: [...] }", type: "object" } } } }, async (req) => ({ webhooks: await ctx.webhooks.list(req.params.tenant) }));
  app.get<P>(`${base}/:id`, { config: ACCESS, schema: { summary: "One webhook (never its secret)", tags, params: idParams, response: { 200: { description: "the webhook", type: "object" }, ...notFound } } }, async (req, reply) => {
    const { tenant, id } = req.params;
    const w = await ctx.webhooks.get(tenant, id);
    return w ? webhookView(w) : missing(reply, tenant, id);
  });
  app.patch<P>(`${base}/:id`, { config: ACCESS, schema: { summary: "Change a webhook: url, achievements filter (null: every unlock), enabled (enabling clears the reason it was disabled for)", tags, params: idParams, body: webhookBody, response: { 200: { description: "the webhook as changed", type: "object" }, 400: { description: "the field that is wrong, and why", ...ErrorJson }, ...notFound } } }, async (req, reply) => {
    const { tenant, id } = req.params;
    try {
      const w = await ctx.webhooks.update(tenant, id, req.body, `disabled through the API by key ${req.principal?.id ?? "?"}`);
      return w ?? missing(reply, tenant, id);
    } catch (err) {
      return refused(reply, err);
    }
  });
  app.delete<P>(`${base}/:id`, { config: ACCESS, schema: { summary: "Remove a webhook, its consumer, delivery log and dead letters", tags, params: idParams, response: { 200: { description: "{ removed: id }", type: "object" }, ...notFound } } }, async (req, reply) => {
    const { tenant, id } = req.params;
    return (await ctx.webhooks.remove(tenant, id)) ? { removed: id } : missing(reply, tenant, id);
  });
  app.get<P & { Querystring: { limit?: string } }>(`${base}/:id/deliveries`, { config: ACCESS, schema: { summary: "The webhook's delivery log, newest first: each attempt's outcome, status, latency and error", tags, params: idParams, querystring: { type: "object", properties: { limit: { type: "integer", minimum: 1, maximum: WEBHOOK_LOG_PER_WEBHOOK, default: WEBHOOK_LOG_PER_WEBHOOK } } }, response: { 200: { description: "{ deliveries: [{ at, unlock_id, user_id, achievement_id, attempt, outcome, status, latency_ms, error }] }", type: "object" }, ...notFound } } }, async (req, reply) => {
    const { tenant, id } = req.params;
    // The log keeps the newest WEBHOOK_LOG_PER_WEBHOOK attempts: all of them by default.
    const page = pageQuery({ limit: req.query.limit }, WEBHOOK_LOG_PER_WEBHOOK, WEBHOOK_LOG_PER_WEBHOOK);
    if ("error" in page) return bad(reply, page.error);
    const log = await ctx.webhooks.deliveries(tenant, id, page.limit);
    return log ? { deliveries: log } : missing(reply, tenant, id);
  });
  app.get<P & { Querystring: { limit?: string; from?: string } }>(`${base}/:id/dead`, { config: ACCESS, schema: { summary: "The webhook's dead letters (deliveries given up on), oldest first", tags, params: idParams, querystring: { type: "object", properties: { limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 }, from: { type: "integer", minimum: 1, description: "first sequence" } } }, response: { 200: { description: "{ dead_letters: [{ seq, unlock_id, user_id, achievement_id, attempts, last_status, last_error, first_attempt_at, failed_at }] }", type: "object" }, ...notFound } } }, async (req, reply) => {
    const { tenant, id } = req.params;
    const page = pageQuery(req.query, 1000);
    if ("error" in page) return bad(reply, page.error);
    const dead = await ctx.webhooks.deadLetters(tenant, id, page);
    return dead ? { dead_letters: dead } : missing(reply, tenant, id);
  });
  app.get<{ Querystring: { tenant?: string; limit?: string; from?: string } }>("/v1/webhooks/dead", { config: { access: { scope: Scopes.Admin } }, schema: { summary: "Dead letters of every webhook (of one tenant with ?tenant=), oldest first", tags, querystring: { type: "object", properties: { tenant: { type: "string" }, limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 }, from: { type: "integer", minimum: 1, description: "first sequence" } } }, response: { 200: { description: "{ dead_letters: [{ seq, tenant, webhook_id, webhook_url, webhook_enabled, webhook_disabled_reason, unlock_id, unlock_seq, user_id, achievement_id, attempts, last_status, last_error, first_attempt_at, failed_at }], next_from }: next_from is the from of the next page (null: no more); redeliver one with POST /v1/tenants/:tenant/webhooks/:webhook_id/dead/:seq/redeliver", type: "object" }, 400: { description: "the query parameter that is wrong", ...ErrorJson } } } }, async (req, reply) => {
    const { tenant } = req.query;
    // An admin route (no :tenant): the query's tenant is checked here.
    if (tenant !== undefined && !ID_TOKEN.test(tenant)) return bad(reply, `tenant id ${JSON.stringify(tenant)} is not valid`);
    const page = pageQuery(req.query, 1000);
    if ("error" in page) return bad(reply, page.error);
    const dead = await ctx.webhooks.allDeadLetters({ ...(tenant ? { tenant } : {}), ...page });
    return { dead_letters: dead, next_from: dead.length === page.limit ? dead[dead.length - 1]!.seq + 1 : null };
  });
  app.post<{ Params: { tenant: string; id: string; seq: string } }>(`${base}/:id/dead/:seq/redeliver`, { config: ACCESS, schema: { summary: "Send a dead letter again, once, now; it leaves the list when the receiver takes it", tags, params: { type: "object", properties: { ...idParams.properties, seq: { type: "integer", minimum: 1 } } }, response: { 200: { description: "{ delivered: true, status, latency_ms }", type: "object" }, ...notFound, 409: { description: "the webhook is disabled: enable it first", ...ErrorJson }, 502: { description: "the receiver did not take it (status, error); the dead letter stays", ...ErrorJson } } } }, async (req, reply) => {
    const { tenant, id } = req.params;
    const seq = positiveInt(req.params.seq);
    if (seq === undefined) return bad(reply, "seq must be a positive integer");
    try {
      const r = await ctx.webhooks.redeliver(tenant, id, seq, req.log);
      if (!r) return missing(reply, tenant, id);
      if (!r.delivered) return reply.code(502).send({ error: "delivery_failed", message: `the receiver did not take it: ${r.error ?? `status ${r.status}`}; the dead letter stays`, status: r.status, latency_ms: r.latency_ms });
      return r;
    } catch (err) {
      if (err instanceof WebhookDeadLetterNotFoundError) return reply.code(404).send({ error: "not_found", message: err.message });
      if (err instanceof WebhookDisabledError) return reply.code(409).send({ error: "disabled", message: err.message });
      throw err;
    }
  });
}

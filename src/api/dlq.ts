import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ErrorJson } from "./docs.ts";
import { ID_TOKEN } from "../events/mod.ts";
import { DeadLetterNotFoundError, listDeadLetters, redriveDeadLetter, RedriveError, showDeadLetter } from "../pipeline/mod.ts";
import type { ApiContext } from "./context.ts";
import { pageQuery, positiveInt } from "./query.ts";

const ADMIN = { config: { access: { scope: Scopes.Admin } } };
const tags = ["dead letters"];
const seqParam = { type: "object", properties: { seq: { type: "integer", minimum: 1 } } };
/** A reject code (`invalid_event`, `bad_json`, …): lower-case letters and underscores. */
const REASON = /^[a-z_]{1,64}$/;

/** `GET /v1/dlq`, `GET /v1/dlq/:seq`, `POST /v1/dlq/:seq/redrive`. */
export function dlqRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Querystring: { tenant?: string; reason?: string; limit?: string; from?: string } }>("/v1/dlq", { ...ADMIN, schema: { summary: "Dead letters, oldest first", tags, querystring: { type: "object", properties: { tenant: { type: "string" }, reason: { type: "string", description: "only letters with this reason (invalid_event, bad_json, …)" }, limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 }, from: { type: "integer", minimum: 1, description: "first DLQ sequence" } } }, response: { 200: { description: "{ dead_letters: [...] }: seq, subject, reason, error, origin, failed_at, delivery_count, stream_seq, event_id, bytes", type: "object" } } } }, async (req, reply) => {
    const { tenant, reason } = req.query;
    if (tenant !== undefined && !ID_TOKEN.test(tenant)) return reply.code(400).send({ error: "bad_request", message: `tenant ${JSON.stringify(tenant)} is not a valid id` });
    if (reason !== undefined && !REASON.test(reason)) return reply.code(400).send({ error: "bad_request", message: `reason ${JSON.stringify(reason)} is not a reason code (lower-case letters and _, e.g. invalid_event)` });
    const page = pageQuery(req.query, 1000);
    if ("error" in page) return reply.code(400).send({ error: "bad_request", message: page.error });
    return { dead_letters: await listDeadLetters(ctx.js, { ...(tenant ? { tenant } : {}), ...(reason ? { reason } : {}), ...page }) };
  });
  app.get<{ Params: { seq: string } }>("/v1/dlq/:seq", { ...ADMIN, schema: { summary: "One dead letter with its body and headers", tags, params: seqParam, response: { 200: { description: "the dead letter", type: "object" }, 404: { description: "no such dead letter", ...ErrorJson } } } }, async (req, reply) => {
    const seq = positiveInt(req.params.seq);
    if (!seq) return reply.code(400).send({ error: "bad_request", message: "seq must be a positive integer" });
    try {
      return await showDeadLetter(ctx.jsm, seq);
    } catch (err) {
      if (err instanceof DeadLetterNotFoundError) return reply.code(404).send({ error: "not_found", message: err.message });
      throw err;
    }
  });
  app.post<{ Params: { seq: string }; Body: { body?: unknown } | undefined }>("/v1/dlq/:seq/redrive", { ...ADMIN, schema: { summary: "Publish a dead letter again on its event subject (or a corrected body instead) and remove it from the DLQ", tags, params: seqParam, description: "Optional JSON body { \"body\": <the corrected event> }, published instead of the stored bytes.", response: { 200: { description: "{ seq, subject, stream_seq, duplicate }", type: "object" }, 404: { description: "no such dead letter", ...ErrorJson }, 422: { description: "no subject to return to, or a truncated body: redrive it with a corrected body (achd dlq redrive --body)", ...ErrorJson } } } }, async (req, reply) => {
    const seq = positiveInt(req.params.seq);
    if (!seq) return reply.code(400).send({ error: "bad_request", message: "seq must be a positive integer" });
    // Checked here, not by a body schema: fastify would refuse the usual bodiless redrive as "body must be object".
    const given = req.body;
    if (given !== undefined && (given === null || typeof given !== "object" || Array.isArray(given) || Object.keys(given).some((k) => k !== "body"))) {
      return reply.code(400).send({ error: "bad_request", message: 'the body, when given, must be { "body": <the corrected event object> }' });
    }
    const fix = given?.body;
    if (fix !== undefined && (fix === null || typeof fix !== "object" || Array.isArray(fix))) return reply.code(400).send({ error: "bad_request", message: "body.body must be the corrected event, a JSON object" });
    // Bounded by http.maxBodyBytes before it was parsed; the worker validates it again like any event.
    const corrected = fix === undefined ? undefined : new TextEncoder().encode(JSON.stringify(fix));
    try {
      return await redriveDeadLetter(ctx.js, ctx.jsm, seq, corrected);
    } catch (err) {
      if (err instanceof DeadLetterNotFoundError) return reply.code(404).send({ error: "not_found", message: err.message });
      if (err instanceof RedriveError) return reply.code(422).send({ error: "needs_corrected_body", message: err.message });
      throw err;
    }
  });
}

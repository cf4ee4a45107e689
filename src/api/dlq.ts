import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ErrorJson } from "./docs.ts";
import { ID_TOKEN } from "../events/mod.ts";
import { DeadLetterNotFoundError, listDeadLetters, redriveDeadLetter, RedriveError, showDeadLetter } from "../pipeline/mod.ts";
import type { ApiContext } from "./context.ts";

function seqOf(raw: string): number | undefined {
  const n = Number(raw);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

const ADMIN = { config: { access: { scope: Scopes.Admin } } };
const tags = ["dead letters"];
const seqParam = { type: "object", properties: { seq: { type: "integer", minimum: 1 } } };

/** `GET /v1/dlq`, `GET /v1/dlq/:seq`, `POST /v1/dlq/:seq/redrive`. */
export function dlqRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Querystring: { tenant?: string; limit?: string; from?: string } }>("/v1/dlq", { ...ADMIN, schema: { summary: "Dead letters, oldest first", tags, querystring: { type: "object", properties: { tenant: { type: "string" }, limit: { type: "integer", minimum: 1, maximum: 1000, default: 100 }, from: { type: "integer", minimum: 1, description: "first DLQ sequence" } } }, response: { 200: { description: "{ dead_letters: [...] }: seq, subject, reason, error, origin, failed_at, delivery_count, stream_seq, event_id, bytes", type: "object" } } } }, async (req, reply) => {
    const { tenant, limit, from } = req.query;
    if (tenant !== undefined && !ID_TOKEN.test(tenant)) return reply.code(400).send({ error: "bad_request", message: `tenant ${JSON.stringify(tenant)} is not a valid id` });
    const n = limit === undefined ? 100 : seqOf(limit);
    if (n === undefined || n > 1000) return reply.code(400).send({ error: "bad_request", message: "limit must be an integer from 1 to 1000" });
    const start = from === undefined ? undefined : seqOf(from);
    if (from !== undefined && start === undefined) return reply.code(400).send({ error: "bad_request", message: "from must be a positive integer" });
    return { dead_letters: await listDeadLetters(ctx.js, { ...(tenant ? { tenant } : {}), limit: n, ...(start ? { from: start } : {}) }) };
  });
  app.get<{ Params: { seq: string } }>("/v1/dlq/:seq", { ...ADMIN, schema: { summary: "One dead letter with its body and headers", tags, params: seqParam, response: { 200: { description: "the dead letter", type: "object" }, 404: { description: "no such dead letter", ...ErrorJson } } } }, async (req, reply) => {
    const seq = seqOf(req.params.seq);
    if (!seq) return reply.code(400).send({ error: "bad_request", message: "seq must be a positive integer" });
    try {
      return await showDeadLetter(ctx.jsm, seq);
    } catch (err) {
      if (err instanceof DeadLetterNotFoundError) return reply.code(404).send({ error: "not_found", message: err.message });
      throw err;
    }
  });
  app.post<{ Params: { seq: string } }>("/v1/dlq/:seq/redrive", { ...ADMIN, schema: { summary: "Publish a dead letter again on its event subject and remove it from the DLQ", tags, params: seqParam, response: { 200: { description: "{ seq, subject, stream_seq, duplicate }", type: "object" }, 404: { description: "no such dead letter", ...ErrorJson }, 422: { description: "no subject to return to, or a truncated body: redrive it with a corrected body (achd dlq redrive --body)", ...ErrorJson } } } }, async (req, reply) => {
    const seq = seqOf(req.params.seq);
    if (!seq) return reply.code(400).send({ error: "bad_request", message: "seq must be a positive integer" });
    try {
      return await redriveDeadLetter(ctx.js, ctx.jsm, seq);
    } catch (err) {
      if (err instanceof DeadLetterNotFoundError) return reply.code(404).send({ error: "not_found", message: err.message });
      if (err instanceof RedriveError) return reply.code(422).send({ error: "needs_corrected_body", message: err.message });
      throw err;
    }
  });
}

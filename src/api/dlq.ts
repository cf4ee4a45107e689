import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ID_TOKEN } from "../events/mod.ts";
import { DeadLetterNotFoundError, listDeadLetters, redriveDeadLetter, showDeadLetter } from "../pipeline/mod.ts";
import type { ApiContext } from "./context.ts";

function seqOf(raw: string): number | undefined {
  const n = Number(raw);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

const ADMIN = { config: { access: { scope: Scopes.Admin } } };

/** `GET /v1/dlq`, `GET /v1/dlq/:seq`, `POST /v1/dlq/:seq/redrive`. */
export function dlqRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Querystring: { tenant?: string; limit?: string; from?: string } }>("/v1/dlq", ADMIN, async (req, reply) => {
    const { tenant, limit, from } = req.query;
    if (tenant !== undefined && !ID_TOKEN.test(tenant)) return reply.code(400).send({ error: "bad_request", message: `tenant ${JSON.stringify(tenant)} is not a valid id` });
    const n = limit === undefined ? 100 : seqOf(limit);
    if (n === undefined || n > 1000) return reply.code(400).send({ error: "bad_request", message: "limit must be an integer from 1 to 1000" });
    const start = from === undefined ? undefined : seqOf(from);
    if (from !== undefined && start === undefined) return reply.code(400).send({ error: "bad_request", message: "from must be a positive integer" });
    return { dead_letters: await listDeadLetters(ctx.js, { ...(tenant ? { tenant } : {}), limit: n, ...(start ? { from: start } : {}) }) };
  });
  app.get<{ Params: { seq: string } }>("/v1/dlq/:seq", ADMIN, async (req, reply) => {
    const seq = seqOf(req.params.seq);
    if (!seq) return reply.code(400).send({ error: "bad_request", message: "seq must be a positive integer" });
    try {
      return await showDeadLetter(ctx.jsm, seq);
    } catch (err) {
      if (err instanceof DeadLetterNotFoundError) return reply.code(404).send({ error: "not_found", message: err.message });
      throw err;
    }
  });
  app.post<{ Params: { seq: string } }>("/v1/dlq/:seq/redrive", ADMIN, async (req, reply) => {
    const seq = seqOf(req.params.seq);
    if (!seq) return reply.code(400).send({ error: "bad_request", message: "seq must be a positive integer" });
    try {
      return await redriveDeadLetter(ctx.js, ctx.jsm, seq);
    } catch (err) {
      if (err instanceof DeadLetterNotFoundError) return reply.code(404).send({ error: "not_found", message: err.message });
      throw err;
    }
  });
}

import type { FastifyInstance } from "fastify";
import { KeyRequestError, Scopes } from "../auth/mod.ts";
import { ID_TOKEN } from "../events/mod.ts";
import type { ApiContext } from "./context.ts";

const ADMIN = { config: { access: { scope: Scopes.Admin } } };

/**
 * Key management, admin only: `POST /v1/keys` (the key is in the answer,
 * and nowhere else, ever), `GET /v1/keys[?tenant=]` (prefixes, scopes,
 * creation and last use; never a key), `DELETE /v1/keys/:id` (revoked in
 * every API process within a second).
 */
export function keyRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const noKeys = { error: "not_available", message: "auth.mode is none: this process keeps no API keys" };
  app.post("/v1/keys", ADMIN, async (req, reply) => {
    if (!ctx.keys) return reply.code(409).send(noKeys);
    const b = req.body;
    if (!b || typeof b !== "object" || Array.isArray(b)) return reply.code(400).send({ error: "bad_request", message: 'the body must be {"tenant": "acme", "scopes": ["events:write"], "name": "…"} (no tenant for an admin key)' });
    const { tenant, scopes, name } = b as Record<string, unknown>;
    if (tenant !== undefined && tenant !== null && typeof tenant !== "string") return reply.code(400).send({ error: "bad_request", message: "tenant: must be a string" });
    if (!Array.isArray(scopes) || scopes.some((s) => typeof s !== "string")) return reply.code(400).send({ error: "bad_request", message: "scopes: must be an array of scope names" });
    if (name !== undefined && typeof name !== "string") return reply.code(400).send({ error: "bad_request", message: "name: must be a string" });
    try {
      const { key, record } = await ctx.keys.create({ tenant: (tenant as string | undefined) ?? null, scopes: scopes as string[], ...(name !== undefined ? { name } : {}) });
      const { hash: _hash, ...shown } = record;
      return reply.code(201).send({ key, ...shown, note: "store the key now: it is not kept and cannot be shown again" });
    } catch (err) {
      if (err instanceof KeyRequestError) return reply.code(400).send({ error: "bad_request", message: err.message });
      throw err;
    }
  });
  app.get<{ Querystring: { tenant?: string } }>("/v1/keys", ADMIN, async (req, reply) => {
    if (!ctx.keys) return reply.code(409).send(noKeys);
    const { tenant } = req.query;
    if (tenant !== undefined && !ID_TOKEN.test(tenant)) return reply.code(400).send({ error: "bad_request", message: `tenant ${JSON.stringify(tenant)} is not a valid id` });
    return { keys: await ctx.keys.list(tenant) };
  });
  app.delete<{ Params: { id: string } }>("/v1/keys/:id", ADMIN, async (req, reply) => {
    if (!ctx.keys) return reply.code(409).send(noKeys);
    if (!(await ctx.keys.revoke(req.params.id))) return reply.code(404).send({ error: "not_found", message: `no key ${req.params.id}` });
    return { revoked: req.params.id };
  });
}

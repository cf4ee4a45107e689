import type { FastifyInstance } from "fastify";
import { ALL_SCOPES, KeyRequestError, Scopes } from "../auth/mod.ts";
import { ID_TOKEN } from "../events/mod.ts";
import type { ApiContext } from "./context.ts";
import { ErrorJson } from "./docs.ts";

const ADMIN = { config: { access: { scope: Scopes.Admin } } };
const tags = ["keys"];

/**
 * Key management, admin only: `POST /v1/keys` (the key is in the answer,
 * and nowhere else, ever), `GET /v1/keys[?tenant=]` (prefixes, scopes,
 * creation and last use; never a key), `DELETE /v1/keys/:id` (revoked in
 * every API process within a second).
 */
export function keyRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const noKeys = { error: "not_available", message: "auth.mode is none: this process keeps no API keys" };
  app.post("/v1/keys", { ...ADMIN, schema: { summary: "Make an API key (the answer holds it, shown this once)", tags, body: { type: "object", properties: { tenant: { type: "string", description: "leave out for an admin key or a metrics key" }, scopes: { type: "array", items: { enum: ALL_SCOPES } }, name: { type: "string" } }, required: ["scopes"] }, response: { 201: { description: "{ key, id, tenant, scopes, name, created_at }", type: "object" }, 400: { description: "the field that is wrong, and why", ...ErrorJson }, 409: { description: "auth.mode is none", ...ErrorJson } } } }, async (req, reply) => {
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
  app.get<{ Querystring: { tenant?: string } }>("/v1/keys", { ...ADMIN, schema: { summary: "API keys: id, prefix, tenant, scopes, creation and last use (never a key)", tags, querystring: { type: "object", properties: { tenant: { type: "string" } } }, response: { 200: { description: "{ keys: [...] }", type: "object" }, 400: { description: "not a valid tenant id", ...ErrorJson }, 409: { description: "auth.mode is none", ...ErrorJson } } } }, async (req, reply) => {
    if (!ctx.keys) return reply.code(409).send(noKeys);
    const { tenant } = req.query;
    if (tenant !== undefined && !ID_TOKEN.test(tenant)) return reply.code(400).send({ error: "bad_request", message: `tenant ${JSON.stringify(tenant)} is not a valid id` });
    return { keys: await ctx.keys.list(tenant) };
  });
  app.delete<{ Params: { id: string } }>("/v1/keys/:id", { ...ADMIN, schema: { summary: "Revoke a key (in every API process within a second)", tags, params: { type: "object", properties: { id: { type: "string" } } }, response: { 200: { description: "{ revoked: id }", type: "object" }, 409: { description: "auth.mode is none", ...ErrorJson }, 404: { description: "no such key", ...ErrorJson } } } }, async (req, reply) => {
    if (!ctx.keys) return reply.code(409).send(noKeys);
    if (!(await ctx.keys.revoke(req.params.id))) return reply.code(404).send({ error: "not_found", message: `no key ${req.params.id}` });
    return { revoked: req.params.id };
  });
}

import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { InvalidTenantError, TenantExistsError, TenantNotFoundError, tenantInboxPrefix } from "../tenants/mod.ts";
import type { ApiContext } from "./context.ts";
import { ErrorJson } from "./docs.ts";

const ADMIN = { config: { access: { scope: Scopes.Admin } } };
const tags = ["tenants"];

/**
 * Tenants on NATS, admin only: `GET /v1/tenants`, `POST /v1/tenants`
 * (`{"tenant": "acme"}`; the answer holds the tenant's nkey seed, shown
 * this once and kept nowhere), `DELETE /v1/tenants/:tenant`. The same
 * registry as `achd tenants`; the embedded server reloads its
 * authorization on every change.
 */
export function tenantRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get("/v1/tenants", { ...ADMIN, schema: { summary: "Tenants registered on NATS, with their public nkeys", tags, response: { 200: { description: "{ tenants: [...] }", type: "object" } } } }, async () => ({ tenants: await ctx.tenants.list() }));
  app.post("/v1/tenants", { ...ADMIN, schema: { summary: "Register a tenant on NATS (the answer holds its nkey seed, shown this once)", tags, body: { type: "object", properties: { tenant: { type: "string" } }, required: ["tenant"] }, response: { 201: { description: "{ tenant, nkey, seed, inbox_prefix, created_at }", type: "object" }, 400: { description: "not a valid tenant id", ...ErrorJson }, 409: { description: "the tenant exists", ...ErrorJson } } } }, async (req, reply) => {
    const tenant = (req.body as { tenant?: unknown } | null)?.tenant;
    if (typeof tenant !== "string") return reply.code(400).send({ error: "bad_request", message: 'tenant: required, e.g. {"tenant": "acme"}' });
    try {
      const issued = await ctx.tenants.add(tenant);
      return reply.code(201).send({ ...issued, inbox_prefix: tenantInboxPrefix(tenant), note: "store the seed now: it is not kept and cannot be shown again" });
    } catch (err) {
      if (err instanceof InvalidTenantError) return reply.code(400).send({ error: "bad_request", message: `tenant: ${err.message}` });
      if (err instanceof TenantExistsError) return reply.code(409).send({ error: "conflict", message: err.message });
      throw err;
    }
  });
  app.delete<{ Params: { tenant: string } }>("/v1/tenants/:tenant", { ...ADMIN, schema: { summary: "Remove a tenant: its NATS credential stops working", tags, params: { type: "object", properties: { tenant: { type: "string" } } }, response: { 200: { description: "{ removed: tenant }", type: "object" }, 400: { description: "not a valid tenant id", ...ErrorJson }, 404: { description: "no such tenant", ...ErrorJson } } } }, async (req, reply) => {
    try {
      await ctx.tenants.remove(req.params.tenant);
      return { removed: req.params.tenant };
    } catch (err) {
      if (err instanceof InvalidTenantError) return reply.code(400).send({ error: "bad_request", message: `tenant: ${err.message}` });
      if (err instanceof TenantNotFoundError) return reply.code(404).send({ error: "not_found", message: err.message });
      throw err;
    }
  });
}

import type { FastifyInstance, FastifyReply } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ID_TOKEN } from "../events/mod.ts";
import type { VersionEntry } from "../registry/mod.ts";
import { RULE_ID, RulesError, type RuleVersion } from "../rules/mod.ts";
import type { ApiContext } from "./context.ts";

function when(ms: number): string | null {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}

/** A version as the API shows it. */
function view(v: RuleVersion, scope: string): Record<string, unknown> {
  return {
    id: v.rule.id,
    version: v.version,
    scope,
    type: v.rule.type,
    enabled: v.rule.enabled,
    effective_from: when(v.effectiveFrom),
    created_at: v.createdAt ?? null,
    source: v.source ?? null,
    ...(v.rule.title ? { title: v.rule.title } : {}),
  };
}

function invalid(reply: FastifyReply, err: RulesError) {
  return reply.code(400).send({
    error: "invalid_rule",
    message: err.message,
    problems: err.problems.map((p) => ({ ...(p.rule ? { rule: p.rule } : {}), path: p.path, reason: p.reason })),
  });
}

/**
 * Rules endpoints: list a tenant's active set and history, add a version
 * (`PUT`), retire a rule (`DELETE`). `*`-scoped (shared) rules live under
 * `/v1/rules`.
 */
export function ruleRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const list = (tenant: string) => {
    const now = Date.now();
    const t = ctx.rules().forTenant(tenant);
    const active = t.versionsAt(now).map((v) => ({ ...view(v, t.history().find((h) => h.version === v)?.scope ?? "shared"), rule: v.rule }));
    const history = t
      .history()
      .map((h) => view(h.version, h.scope))
      .sort((a, b) => String(a.id).localeCompare(String(b.id)) || Number(a.version) - Number(b.version));
    return { tenant: tenant === "*" ? null : tenant, at: new Date(now).toISOString(), active, history };
  };
  const put = async (tenant: string, id: string, body: unknown, reply: FastifyReply) => {
    if (!RULE_ID.test(id)) return reply.code(400).send({ error: "bad_request", message: `rule id ${JSON.stringify(id)} is not valid (a-z 0-9 _ -)` });
    if (!body || typeof body !== "object" || Array.isArray(body)) return reply.code(400).send({ error: "bad_request", message: "the body must be one rule (a JSON object)" });
    const b = body as Record<string, unknown>;
    if (b.id !== undefined && b.id !== id) return reply.code(400).send({ error: "bad_request", message: `body id ${JSON.stringify(b.id)} does not match the path id ${id}` });
    try {
      const v: VersionEntry = await ctx.registry.put(tenant, { ...b, id }, Date.now());
      return reply.code(201).send(view(v, tenant === "*" ? "shared" : "tenant"));
    } catch (err) {
      if (err instanceof RulesError) return invalid(reply, err);
      throw err;
    }
  };
  const retire = async (tenant: string, id: string, reply: FastifyReply) => {
    try {
      const v = await ctx.registry.retire(tenant, id, Date.now());
      if (!v) return reply.code(404).send({ error: "not_found", message: `no rule ${id} in ${tenant === "*" ? "the shared rules" : `tenant ${tenant}`}` });
      return view(v, tenant === "*" ? "shared" : "tenant");
    } catch (err) {
      if (err instanceof RulesError) return invalid(reply, err);
      throw err;
    }
  };
  const badTenant = (tenant: string, reply: FastifyReply) =>
    ID_TOKEN.test(tenant) ? undefined : reply.code(400).send({ error: "bad_request", message: `tenant id ${JSON.stringify(tenant)} is not valid` });

  const admin = { config: { access: { scope: Scopes.Admin } } };
  const read = { config: { access: { scope: Scopes.Read, tenant: "param" as const } } };
  const write = { config: { access: { scope: Scopes.RulesWrite, tenant: "param" as const } } };
  app.get("/v1/rules", admin, async () => list("*"));
  app.put<{ Params: { id: string } }>("/v1/rules/:id", admin, async (req, reply) => put("*", req.params.id, req.body, reply));
  app.delete<{ Params: { id: string } }>("/v1/rules/:id", admin, async (req, reply) => retire("*", req.params.id, reply));
  app.get<{ Params: { tenant: string } }>("/v1/tenants/:tenant/rules", read, async (req, reply) => badTenant(req.params.tenant, reply) ?? list(req.params.tenant));
  app.put<{ Params: { tenant: string; id: string } }>("/v1/tenants/:tenant/rules/:id", write, async (req, reply) => badTenant(req.params.tenant, reply) ?? put(req.params.tenant, req.params.id, req.body, reply));
  app.delete<{ Params: { tenant: string; id: string } }>("/v1/tenants/:tenant/rules/:id", write, async (req, reply) => badTenant(req.params.tenant, reply) ?? retire(req.params.tenant, req.params.id, reply));
}

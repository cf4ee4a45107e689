import type { FastifyInstance, FastifyReply } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ErrorJson } from "./docs.ts";
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

/** 400 `invalid_rule` with every problem of a rule, by path. */
export function invalid(reply: FastifyReply, err: RulesError) {
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

  const admin = { access: { scope: Scopes.Admin } };
  const read = { access: { scope: Scopes.Read, tenant: "param" as const } };
  const write = { access: { scope: Scopes.RulesWrite, tenant: "param" as const } };
  const tags = ["rules"];
  const listing = { 200: { description: "the rules in force now (rule bodies included) and every version's summary", type: "object" } };
  const added = { 201: { description: "the version added", type: "object" }, 400: { description: "every problem of the rule, by path", ...ErrorJson } };
  const retired = { 200: { description: "the retiring version", type: "object" }, 404: { description: "no such rule", ...ErrorJson } };
  const rule = { type: "object", description: "one rule (docs/rules.md); its id is the path's" };
  app.get("/v1/rules", { config: admin, schema: { summary: "The shared rules: in force now, and every version", tags, response: listing } }, async () => list("*"));
  app.put<{ Params: { id: string } }>("/v1/rules/:id", { config: admin, schema: { summary: "Add a version of a shared rule", tags, body: rule, response: added } }, async (req, reply) => put("*", req.params.id, req.body, reply));
  app.delete<{ Params: { id: string } }>("/v1/rules/:id", { config: admin, schema: { summary: "Retire a shared rule from now on", tags, response: retired } }, async (req, reply) => retire("*", req.params.id, reply));
  app.get<{ Params: { tenant: string } }>("/v1/tenants/:tenant/rules", { config: read, schema: { summary: "A tenant's rules (its own and shared): in force now, and every version", tags, response: listing } }, async (req) => list(req.params.tenant));
  app.put<{ Params: { tenant: string; id: string } }>("/v1/tenants/:tenant/rules/:id", { config: write, schema: { summary: "Add a version of a tenant's rule", tags, body: rule, response: added } }, async (req, reply) => put(req.params.tenant, req.params.id, req.body, reply));
  app.delete<{ Params: { tenant: string; id: string } }>("/v1/tenants/:tenant/rules/:id", { config: write, schema: { summary: "Retire a tenant's rule from now on", tags, response: retired } }, async (req, reply) => retire(req.params.tenant, req.params.id, reply));
}

import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ErrorJson } from "./docs.ts";
import { ID_TOKEN } from "../events/mod.ts";
import { progressOf } from "../rules/mod.ts";
import { userKey } from "../core/mod.ts";
import { periodLabel } from "../util/time.ts";
import type { ApiContext } from "./context.ts";

const ACHIEVEMENTS = {
  summary: "What one user has unlocked, and how far along the rest are",
  tags: ["achievements"],
  params: { type: "object", properties: { tenant: { type: "string" }, user: { type: "string" } } },
  response: {
    200: {
      description: "unlocked (with unlocked_at, rule_version, unlock_id, tier) and in_progress (current, target; best for streaks, step/steps for sequences and composites); hidden achievements appear once unlocked",
      type: "object",
      properties: { tenant_id: { type: "string" }, user_id: { type: "string" }, unlocked: { type: "array", items: { type: "object" } }, in_progress: { type: "array", items: { type: "object" } } },
    },
    400: { description: "a tenant or user id that is not valid", ...ErrorJson },
  },
};

/**
 * `GET /v1/tenants/:tenant/users/:user/achievements`: what the user has
 * unlocked (with `unlocked_at` and `rule_version`) and how far along the
 * rest are. Hidden achievements appear only once unlocked.
 */
export function achievementRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: { tenant: string; user: string } }>("/v1/tenants/:tenant/users/:user/achievements", { config: { access: { scope: Scopes.Read, tenant: "param" } }, schema: ACHIEVEMENTS }, async (req, reply) => {
    const { tenant, user } = req.params;
    for (const [name, v] of [["tenant", tenant], ["user", user]] as const) {
      if (!ID_TOKEN.test(v)) return reply.code(400).send({ error: "bad_request", message: `${name} id ${JSON.stringify(v)} is not a valid id (A-Z a-z 0-9 _ -)` });
    }
    const { state } = await ctx.state.read(userKey(tenant, user));
    const now = Date.now();
    const set = ctx.rules().forTenant(tenant).at(now);
    const unlocked = Object.entries(state.eval.unlocked).map(([, u]) => {
      const rule = set.byId.get(u.rule_id)?.rule;
      return {
        achievement_id: u.rule_id,
        tier: u.tier,
        rule_id: u.rule_id,
        rule_version: u.rule_version,
        unlock_id: u.unlock_id,
        unlocked_at: u.unlocked_at,
        occurrence: u.occurrence,
        ...(rule?.repeatable ? { period: periodLabel(u.occurrence, rule.repeatable.every) } : {}),
        ...(rule?.title ? { title: rule.title } : {}),
      };
    });
    unlocked.sort((a, b) => a.unlocked_at.localeCompare(b.unlocked_at) || a.achievement_id.localeCompare(b.achievement_id));
    return { tenant_id: tenant, user_id: user, unlocked, in_progress: progressOf(state.eval, set, now) };
  });
}

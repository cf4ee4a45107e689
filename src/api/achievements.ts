import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ErrorJson } from "./docs.ts";
import { ID_TOKEN } from "../events/mod.ts";
import { unlockedView, userAsOf } from "../history/mod.ts";
import { progressOf } from "../rules/mod.ts";
import { userKey } from "../core/mod.ts";
import type { ApiContext } from "./context.ts";
import { evalOptions, rfc3339 } from "./history.ts";

const ACHIEVEMENTS = {
  summary: "What one user has unlocked, and how far along the rest are",
  tags: ["achievements"],
  params: { type: "object", properties: { tenant: { type: "string" }, user: { type: "string" } } },
  querystring: {
    type: "object",
    properties: {
      as_of: {
        type: "string",
        format: "date-time",
        description: "an event time (RFC 3339): what the user had then, computed from their events in the log that occurred at or before it (computed_from: history, with the coverage and the stream's horizon) instead of read from the live state",
      },
    },
  },
  response: {
    200: {
      description: "unlocked (with unlocked_at, rule_version, unlock_id, tier) and in_progress (current, target; best for streaks, step/steps for sequences and composites); hidden achievements appear once unlocked. With as_of: also as_of, computed_from and coverage",
      type: "object",
      properties: { tenant_id: { type: "string" }, user_id: { type: "string" }, unlocked: { type: "array", items: { type: "object" } }, in_progress: { type: "array", items: { type: "object" } } },
    },
    400: { description: "a tenant or user id that is not valid, or an as_of that is not an RFC 3339 time", ...ErrorJson },
  },
};

/**
 * `GET /v1/tenants/:tenant/users/:user/achievements`: what the user has
 * unlocked (with `unlocked_at` and `rule_version`) and how far along the
 * rest are. Hidden achievements appear only once unlocked. With
 * `?as_of=<RFC 3339>`, the same computed from the user's events in the log
 * up to that event time.
 */
export function achievementRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get<{ Params: { tenant: string; user: string }; Querystring: { as_of?: string } }>("/v1/tenants/:tenant/users/:user/achievements", { config: { access: { scope: Scopes.Read, tenant: "param" } }, schema: ACHIEVEMENTS }, async (req, reply) => {
    const { tenant, user } = req.params;
    for (const [name, v] of [["tenant", tenant], ["user", user]] as const) {
      if (!ID_TOKEN.test(v)) return reply.code(400).send({ error: "bad_request", message: `${name} id ${JSON.stringify(v)} is not a valid id (A-Z a-z 0-9 _ -)` });
    }
    if (req.query.as_of !== undefined) {
      const at = rfc3339(req.query.as_of);
      if (at === undefined) return reply.code(400).send({ error: "bad_request", message: `as_of ${JSON.stringify(String(req.query.as_of).slice(0, 64))} is not an RFC 3339 time with a zone (e.g. 2026-05-01T00:00:00Z)` });
      return userAsOf(ctx.js, ctx.jsm, tenant, user, at, evalOptions(ctx, ctx.rules()));
    }
    const { state } = await ctx.state.read(userKey(tenant, user));
    const now = Date.now();
    const set = ctx.rules().forTenant(tenant).at(now);
    const unlocked = unlockedView(state.eval, set);
    return { tenant_id: tenant, user_id: user, unlocked, in_progress: progressOf(state.eval, set, now) };
  });
}

import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ErrorJson } from "./docs.ts";
import { ID_TOKEN } from "../events/mod.ts";
import { unlockedView, userAsOf } from "../history/mod.ts";
import { evalOptionsOf } from "../replay/mod.ts";
import { parseInstant, progressOf } from "../rules/mod.ts";
import { userKey } from "../core/mod.ts";
import type { ApiContext } from "./context.ts";
import { HistoryRuns, MAX_RUNS } from "./history-runs.ts";

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
    429: { description: `with as_of: ${MAX_RUNS} history runs are going on in this process already; see Retry-After`, ...ErrorJson },
  },
};

/**
 * `GET /v1/tenants/:tenant/users/:user/achievements`: what the user has
 * unlocked (with `unlocked_at` and `rule_version`) and how far along the
 * rest are. Hidden achievements appear only once unlocked. With
 * `?as_of=<RFC 3339>`, the same computed from the user's events in the log
 * up to that event time.
 */
export function achievementRoutes(app: FastifyInstance, ctx: ApiContext, runs: HistoryRuns): void {
  app.get<{ Params: { tenant: string; user: string }; Querystring: { as_of?: string } }>("/v1/tenants/:tenant/users/:user/achievements", { config: { access: { scope: Scopes.Read, tenant: "param" } }, schema: ACHIEVEMENTS }, async (req, reply) => {
    const { tenant, user } = req.params;
    // The tenant id is checked with the key (the auth hook); the user id here.
    if (!ID_TOKEN.test(user)) return reply.code(400).send({ error: "bad_request", message: `user id ${JSON.stringify(user)} is not a valid id (A-Z a-z 0-9 _ -)` });
    if (req.query.as_of !== undefined) {
      const at = parseInstant(req.query.as_of);
      if (at === undefined) return reply.code(400).send({ error: "bad_request", message: `as_of ${JSON.stringify(String(req.query.as_of).slice(0, 64))} is not an RFC 3339 time with a zone (e.g. 2026-05-01T00:00:00Z)` });
      // A read of the log: one of the process's history runs, stopped when the client goes away.
      const run = runs.take();
      if (!run) return HistoryRuns.tooMany(reply);
      const undo = run.cancelOnClose(reply);
      try {
        const going = userAsOf(ctx.js, ctx.jsm, tenant, user, at, { ...evalOptionsOf(ctx.config), book: ctx.rules(), signal: run.ac.signal });
        run.done = going;
        return await going;
      } finally {
        run.release();
        undo();
      }
    }
    const { state } = await ctx.state.read(userKey(tenant, user));
    const now = Date.now();
    const set = ctx.rules().forTenant(tenant).at(now);
    const unlocked = unlockedView(state.eval, set);
    return { tenant_id: tenant, user_id: user, unlocked, in_progress: progressOf(state.eval, set, now) };
  });
}

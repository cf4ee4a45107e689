import type { FastifyInstance, FastifyReply } from "fastify";
import { UnlockRecords } from "../pipeline/mod.ts";
import { Scopes } from "../auth/mod.ts";
import { ID_TOKEN } from "../events/mod.ts";
import {
  BACKFILL_RATE,
  backfill,
  backfillKey,
  backfillMarkdown,
  candidateVersion,
  ConcurrentRunError,
  HistoryIncompleteError,
  messageOf,
  REPORTS_LISTED,
  rebuildUser,
  shadowMarkdown,
  shadowRun,
  storedVersion,
  type BackfillReport,
  type ShadowReport,
} from "../history/mod.ts";
import { parseRule } from "../registry/mod.ts";
import { evalOptionsOf } from "../replay/mod.ts";
import { parseInstant, RULE_ID, RulesError, type RuleVersion } from "../rules/mod.ts";
import type { ApiContext } from "./context.ts";
import { ErrorJson } from "./docs.ts";
import { HistoryRuns, MAX_RUNS, type Run } from "./history-runs.ts";
import { invalid } from "./rules.ts";

/** How long stopping the API waits for its runs to save their cancelled reports. */
const STOP_WAIT_MS = 5000;

type Body = Record<string, unknown>;

const isObject = (v: unknown): v is Body => typeof v === "object" && v !== null && !Array.isArray(v);
const isPositiveInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 1;

const tags = ["history"];
const ruleParams = { type: "object", properties: { tenant: { type: "string" }, id: { type: "string", description: "the rule id (a-z 0-9 _ -)" } } };
const reportParams = { type: "object", properties: { id: { type: "string", description: "a report id, as GET /v1/history/reports lists them" } } };
const busy = { 429: { description: `over the per-key or per-tenant request rate, or ${MAX_RUNS} history runs are going on in this process already; see Retry-After`, ...ErrorJson } };

/**
 * History over HTTP: a shadow run of a candidate rule version over the
 * stored events (`…/rules/:id/shadow`, synchronous, cancelled when the
 * client goes away), a backfill in the background (`…/rules/:id/backfill`,
 * 202 with the report's id), a user's rebuild from the log (admin), and the
 * reports every run leaves in bucket `ach_history` (admin). Runs of this
 * process are cancelled with `DELETE /v1/history/reports/:id`, and when the
 * API stops.
 */
export function historyRoutes(app: FastifyInstance, ctx: ApiContext, runs: HistoryRuns): void {
  const store = ctx.history;
  /** Backfills going on in this API instance, by checkpoint key. */
  const backfills = new Map<string, Run>();

  const bad = (reply: FastifyReply, message: string) => reply.code(400).send({ error: "bad_request", message });
  const missing = (reply: FastifyReply, message: string) => reply.code(404).send({ error: "not_found", message });
  const badIds = (reply: FastifyReply, ids: [string, string, RegExp][]) => {
    for (const [name, v, re] of ids) if (!re.test(v)) return bad(reply, `${name} id ${JSON.stringify(v)} is not valid (${re === RULE_ID ? "a-z 0-9 _ -" : "A-Z a-z 0-9 _ -"})`);
    return undefined;
  };
  const unknownField = (reply: FastifyReply, b: Body, allowed: readonly string[]) => {
    const extra = Object.keys(b).find((k) => !allowed.includes(k));
    return extra === undefined ? undefined : bad(reply, `unknown field ${JSON.stringify(extra)}: the body takes ${allowed.join(", ")}`);
  };

  app.addHook("preClose", () => runs.stop(STOP_WAIT_MS));

  const write = { access: { scope: Scopes.RulesWrite, tenant: "param" as const } };
  const admin = { access: { scope: Scopes.Admin } };

  app.post<{ Params: { tenant: string; id: string }; Querystring: { format?: string } }>(
    "/v1/tenants/:tenant/rules/:id/shadow",
    {
      config: write,
      schema: {
        summary: "Shadow-run a candidate version of a rule over the tenant's stored events: who would gain, lose or move an unlock (nothing is written)",
        description: `The body is a candidate rule (as PUT takes it; its version defaults to the latest stored one + 1) or {"version": N}, a stored version of the rule (the tenant's, else the shared one). The run reads every stored event of the tenant on one thread, answers when done, and is cancelled when the client goes away; its report is kept either way (GET /v1/history/reports/:id). At most ${MAX_RUNS} history runs at once per API process.`,
        tags,
        params: ruleParams,
        querystring: { type: "object", properties: { format: { type: "string", enum: ["json", "markdown"], default: "json", description: "markdown: a table per achievement and tier, then samples (text/markdown)" } } },
        body: { type: "object", description: 'a candidate rule (docs/rules.md; its id is the path\'s), or { "version": N }' },
        response: {
          200: { description: "the shadow report: coverage, totals {gain, lose, move, gain_users, lose_users, move_users}, and a row per achievement and tier with samples; status done, or cancelled (partial)", type: "object" },
          400: { description: "the field that is wrong (invalid_rule: every problem of the candidate, by path)", ...ErrorJson },
          404: { description: "no such stored version of the rule", ...ErrorJson },
          ...busy,
        },
      },
    },
    async (req, reply) => {
      const { tenant, id } = req.params;
      // The tenant id is checked with the key (the auth hook); the rule id here.
      if (badIds(reply, [["rule", id, RULE_ID]])) return reply;
      const format = req.query.format ?? "json";
      if (format !== "json" && format !== "markdown") return bad(reply, `format ${JSON.stringify(format)} is not json or markdown`);
      const b = req.body;
      if (!isObject(b)) return bad(reply, 'the body must be a candidate rule (a JSON object, as PUT takes it) or {"version": N}, a stored version of the rule');
      if (b.id !== undefined && b.id !== id) return bad(reply, `body id ${JSON.stringify(b.id)} does not match the path id ${id}`);
      const book = ctx.rules();
      let version: RuleVersion;
      let from: string;
      if (Object.keys(b).every((k) => k === "id" || k === "version") && b.version !== undefined) {
        if (!isPositiveInt(b.version)) return bad(reply, `version must be a positive integer, not ${JSON.stringify(b.version)}`);
        const found = storedVersion(book, [tenant, "*"], id, b.version);
        if (typeof found === "string") return missing(reply, found);
        version = found.version;
        from = `stored ${found.scope === "*" ? "shared" : found.scope}/${id}@${b.version}`;
      } else {
        try {
          // Validated as PUT validates a rule: alone here, with the rest of the rules by the run (400 before it reads anything).
          version = candidateVersion(book, tenant, parseRule({ ...b, id }, `(shadow candidate, tenant ${tenant})`), "api");
        } catch (err) {
          if (err instanceof RulesError) return invalid(reply, err);
          throw err;
        }
        from = `api (key ${req.principal?.id ?? "?"})`;
      }
      const run = runs.take();
      if (!run) return HistoryRuns.tooMany(reply);
      const undo = run.cancelOnClose(reply);
      let report: ShadowReport;
      try {
        const going = shadowRun(ctx.js, ctx.jsm, { ...evalOptionsOf(ctx.config), book, scope: tenant, version, from, tenant, threads: 1, signal: run.ac.signal, store, onStart: (rid) => run.started(rid) });
        run.done = going;
        report = await going;
      } catch (err) {
        if (err instanceof RulesError) return invalid(reply, err);
        throw err;
      } finally {
        run.release();
        undo();
      }
      if (report.status === "cancelled") ctx.log.info({ report: report.id, rule: id, tenant }, "shadow run cancelled");
      if (format === "markdown") return reply.header("content-type", "text/markdown; charset=utf-8").send(shadowMarkdown(report));
      return report;
    },
  );

  app.post<{ Params: { tenant: string; id: string } }>(
    "/v1/tenants/:tenant/rules/:id/backfill",
    {
      config: write,
      schema: {
        summary: "Backfill: record, backdated and marked backfill: true, the unlocks the tenant's stored events imply under a version of the rule and that are not recorded yet",
        description: `Starts in the background and answers 202 with the report's id (GET /v1/history/reports/:id, admin). Checkpointed: a run stopped or crashed is resumed by the next one with the same rule, version, tenant and start. Unlocks are never revoked: those the version no longer implies are counted (would_lose) only. At most ${MAX_RUNS} history runs at once per API process.`,
        tags,
        params: ruleParams,
        body: {
          type: "object",
          properties: {
            version: { type: "integer", minimum: 1, description: "a stored version of the rule (the tenant's, else the shared one); default: the latest one (refused when it retires the rule)" },
            from: { type: "string", format: "date-time", description: "read the events stored from this time on (RFC 3339); default: all of them" },
            rate: { type: "number", minimum: BACKFILL_RATE.min, maximum: BACKFILL_RATE.max, default: BACKFILL_RATE.default, description: "unlocks recorded per second, at most" },
          },
        },
        response: {
          202: { description: '{ report_id, status: "running", report: "/v1/history/reports/<id>" }', type: "object" },
          400: { description: "the field that is wrong (invalid_rule: the version does not fit with the rest of the rules)", ...ErrorJson },
          404: { description: "no such stored version of the rule (or the latest retires the rule)", ...ErrorJson },
          409: { description: "concurrent_run: a backfill of the same rule, version, tenant and start is going on", ...ErrorJson },
          ...busy,
        },
      },
    },
    async (req, reply) => {
      const { tenant, id } = req.params;
      // The tenant id is checked with the key (the auth hook); the rule id here.
      if (badIds(reply, [["rule", id, RULE_ID]])) return reply;
      const b = req.body ?? {};
      if (!isObject(b)) return bad(reply, "the body must be a JSON object: { version?, from?, rate? }");
      if (unknownField(reply, b, ["version", "from", "rate"])) return reply;
      if (b.version !== undefined && !isPositiveInt(b.version)) return bad(reply, `version must be a positive integer, not ${JSON.stringify(b.version)}`);
      const fromTime = b.from === undefined ? undefined : parseInstant(b.from);
      if (b.from !== undefined && fromTime === undefined) return bad(reply, `from must be an RFC 3339 time with a zone (e.g. 2026-05-01T00:00:00Z), not ${JSON.stringify(b.from)}`);
      const rate = b.rate ?? BACKFILL_RATE.default;
      if (typeof rate !== "number" || !Number.isFinite(rate) || rate < BACKFILL_RATE.min || rate > BACKFILL_RATE.max) return bad(reply, `rate must be a number of unlocks per second from ${BACKFILL_RATE.min} to ${BACKFILL_RATE.max}, not ${JSON.stringify(b.rate)}`);
      const book = ctx.rules();
      const found = storedVersion(book, [tenant, "*"], id, b.version as number | undefined);
      if (typeof found === "string") return missing(reply, found);
      const key = backfillKey(found.scope, found.version, tenant, fromTime);
      const other = backfills.get(key);
      if (other) {
        const what = `a backfill of ${id}@${found.version.version} for tenant ${tenant}${b.from ? ` from ${String(b.from)}` : ""}`;
        const message = other.id ? `${what} is going on in this process (report ${other.id}): wait for it, or stop it (DELETE /v1/history/reports/${other.id})` : `${what} is starting in this process: wait for it`;
        return reply.code(409).send({ error: "concurrent_run", message, ...(other.id ? { report_id: other.id } : {}) });
      }
      const run = runs.take();
      if (!run) return HistoryRuns.tooMany(reply);
      backfills.set(key, run);
      const over = () => {
        run.release();
        backfills.delete(key);
      };
      // Answered once the report is saved as running (its id known), or with the error that came first.
      let rid: string;
      try {
        rid = await new Promise<string>((resolve, reject) => {
          const going = backfill(
            { js: ctx.js, jsm: ctx.jsm, records: new UnlockRecords(ctx.js, ctx.jsm), state: ctx.buckets.state, store },
            { ...evalOptionsOf(ctx.config), book, scope: found.scope, version: found.version, tenant, fromTime, unlocksPerSecond: rate, threads: 1, signal: run.ac.signal, onStart: (started) => (run.started(started), resolve(started)) },
          );
          going.catch(reject);
          run.done = going.then(
            (r: BackfillReport) => ctx.log.info({ report: r.id, rule: id, tenant, status: r.status, recorded: r.recorded, already_recorded: r.already_recorded }, "backfill finished"),
            // Its report says failed (the library saved it so, or says why it could not).
            (err: unknown) => {
              // Before its start the error is the answer (400, 409); after, it is logged.
              if (run.id) ctx.log.error({ err: messageOf(err), report: run.id, rule: id, tenant }, "backfill failed");
            },
          );
          void run.done.finally(over);
        });
      } catch (err) {
        if (err instanceof RulesError) return invalid(reply, err);
        if (err instanceof ConcurrentRunError) return reply.code(409).send({ error: "concurrent_run", message: err.message });
        throw err;
      }
      return reply.code(202).send({ report_id: rid, status: "running", report: `/v1/history/reports/${rid}` });
    },
  );

  app.post<{ Params: { tenant: string; user: string } }>(
    "/v1/tenants/:tenant/users/:user/rebuild",
    {
      config: admin,
      schema: {
        summary: "Rebuild one user's stored state from their events in the log (compare-and-set; recorded unlocks are kept, unrecorded ones delivered)",
        description: 'Optional body { "force": true }: rebuild even when the events stream no longer holds all history (progress from the events gone is lost).',
        tags,
        params: { type: "object", properties: { tenant: { type: "string" }, user: { type: "string" } } },
        body: { type: "object", properties: { force: { type: "boolean", default: false } } },
        response: {
          200: { description: "the rebuild report: previous state, rules_changed, unlocked_added, unlocked_dropped, kept_from_records, delivered", type: "object" },
          400: { description: "a tenant or user id that is not valid, or a body field that is wrong", ...ErrorJson },
          409: { description: "history_incomplete: the stream no longer holds all history (horizon, recorded_unlocks, progress_at_risk); rebuild with force", ...ErrorJson },
        },
      },
    },
    async (req, reply) => {
      const { tenant, user } = req.params;
      if (badIds(reply, [["tenant", tenant, ID_TOKEN], ["user", user, ID_TOKEN]])) return reply;
      const b = req.body ?? {};
      if (!isObject(b)) return bad(reply, 'the body must be a JSON object: { "force"?: boolean }');
      if (unknownField(reply, b, ["force"])) return reply;
      if (b.force !== undefined && typeof b.force !== "boolean") return bad(reply, `force must be true or false, not ${JSON.stringify(b.force)}`);
      try {
        return await rebuildUser({ js: ctx.js, jsm: ctx.jsm, state: ctx.buckets.state, seen: ctx.buckets.seen, records: new UnlockRecords(ctx.js, ctx.jsm), store }, tenant, user, { ...evalOptionsOf(ctx.config), book: ctx.rules(), force: b.force === true });
      } catch (err) {
        if (err instanceof HistoryIncompleteError) return reply.code(409).send({ error: "history_incomplete", message: err.message, ...err.details });
        throw err;
      }
    },
  );

  app.get<{ Querystring: { limit?: string } }>(
    "/v1/history/reports",
    {
      config: admin,
      schema: {
        summary: "The newest history reports (shadow runs, backfills, rebuilds), newest first",
        tags,
        querystring: { type: "object", properties: { limit: { type: "integer", minimum: 1, maximum: REPORTS_LISTED, default: REPORTS_LISTED, description: "how many" } } },
        response: { 200: { description: "{ reports: [...] }: each with kind, id, created_at, status and its kind's numbers", type: "object" }, 400: { description: "a limit out of range", ...ErrorJson } },
      },
    },
    async (req, reply) => {
      const limit = req.query.limit === undefined ? REPORTS_LISTED : Number(req.query.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > REPORTS_LISTED) return bad(reply, `limit must be an integer from 1 to ${REPORTS_LISTED}, not ${JSON.stringify(req.query.limit)}`);
      return { reports: await store.list(limit) };
    },
  );

  app.get<{ Params: { id: string }; Querystring: { format?: string } }>(
    "/v1/history/reports/:id",
    {
      config: admin,
      schema: {
        summary: "One history report",
        tags,
        params: reportParams,
        querystring: { type: "object", properties: { format: { type: "string", enum: ["json", "markdown"], default: "json", description: "markdown: shadow and backfill reports as text/markdown" } } },
        response: { 200: { description: "the report", type: "object" }, 400: { description: "a format the report has not", ...ErrorJson }, 404: { description: "no such report", ...ErrorJson } },
      },
    },
    async (req, reply) => {
      const format = req.query.format ?? "json";
      if (format !== "json" && format !== "markdown") return bad(reply, `format ${JSON.stringify(format)} is not json or markdown`);
      const r = await store.get(req.params.id);
      if (!r) return missing(reply, `no history report ${JSON.stringify(req.params.id.slice(0, 64))}`);
      if (format === "json") return r;
      if (r.kind === "rebuild") return bad(reply, "format markdown: a rebuild report has only its JSON form");
      return reply.header("content-type", "text/markdown; charset=utf-8").send(r.kind === "shadow" ? shadowMarkdown(r as ShadowReport) : backfillMarkdown(r as BackfillReport));
    },
  );

  app.delete<{ Params: { id: string } }>(
    "/v1/history/reports/:id",
    { config: admin, schema: { summary: "Cancel a shadow run or backfill going on in this API process (its report says cancelled; a backfill resumes from its checkpoint when started again)", tags, params: reportParams, response: { 202: { description: "{ cancelled: true }: the run stops shortly", type: "object" }, 404: { description: "no run with this id is going on in this process", ...ErrorJson } } } },
    async (req, reply) => {
      if (!runs.cancel(req.params.id)) return missing(reply, `no run ${JSON.stringify(req.params.id.slice(0, 64))} is going on in this API process (finished, or running in another process)`);
      return reply.code(202).send({ cancelled: true });
    },
  );
}

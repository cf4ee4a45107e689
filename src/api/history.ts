import type { FastifyInstance, FastifyReply } from "fastify";
import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { Scopes } from "../auth/mod.ts";
import { ID_TOKEN, zodIssues } from "../events/mod.ts";
import {
  backfill,
  backfillKey,
  backfillMarkdown,
  ConcurrentRunError,
  HistoryIncompleteError,
  HistoryStore,
  rebuildUser,
  reportId,
  shadowMarkdown,
  shadowRun,
  withVersion,
  type BackfillReport,
  type ReportBase,
  type ShadowReport,
  type UserEvalOptions,
} from "../history/mod.ts";
import { RULE_ID, RuleSchema, RulesError, type RuleBook, type RuleVersion } from "../rules/mod.ts";
import type { ApiContext } from "./context.ts";
import { ErrorJson } from "./docs.ts";
import { invalid } from "./rules.ts";

/** History runs (shadow runs and backfills) one API process runs at once: each reads the events log on the event loop the API shares. */
export const MAX_RUNS = 4;
/** A backfill's default rate, and its bounds (unlocks per second). */
export const BACKFILL_RATE = { default: 200, min: 1, max: 10_000 } as const;
/** A backfill that has not saved its first report yet (its id is not known). */
const STARTING = "(starting)";
/** How long stopping the API waits for its runs to save their cancelled reports. */
const STOP_WAIT_MS = 5000;

const RFC3339 = z.iso.datetime({ offset: true });

/** Epoch ms of an RFC 3339 time with a zone, or undefined when `v` is not one. */
export function rfc3339(v: unknown): number | undefined {
  if (typeof v !== "string" || !RFC3339.safeParse(v).success) return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : undefined;
}

/** How the history library decodes and evaluates events: as the workers do, from the config. */
export function evalOptions(ctx: Pick<ApiContext, "config">, book: RuleBook): UserEvalOptions {
  const c = ctx.config;
  return { book, maxBytes: c.events.maxBytes, partitions: c.partitions, limits: c.limits, recentIds: c.worker.recentIds, fingerprints: c.dedup.fingerprints };
}

/** A store that tells `onSave` of every report it saved: a backfill's id is known once it saved its first (running) report. */
class TappedStore extends HistoryStore {
  constructor(
    kv: KV,
    private readonly onSave: (r: ReportBase) => void,
  ) {
    super(kv);
  }
  override async save(r: ReportBase): Promise<void> {
    await super.save(r);
    this.onSave(r);
  }
}

type Job = { ac: AbortController; done: Promise<unknown> };
type Body = Record<string, unknown>;

const isObject = (v: unknown): v is Body => typeof v === "object" && v !== null && !Array.isArray(v);
const isPositiveInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 1;
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

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
export function historyRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const store = ctx.history;
  /** Runs going on in this API instance, by report id; and backfills by checkpoint key (their report id). */
  const jobs = new Map<string, Job>();
  const backfills = new Map<string, string>();
  /** Backfills started whose first report is not saved yet (not in `jobs` yet). */
  let starting = 0;

  const bad = (reply: FastifyReply, message: string) => reply.code(400).send({ error: "bad_request", message });
  const missing = (reply: FastifyReply, message: string) => reply.code(404).send({ error: "not_found", message });
  const tooMany = (reply: FastifyReply) => reply.code(429).header("retry-after", "5").send({ error: "too_many_requests", message: `${MAX_RUNS} history runs are going on in this process already (GET /v1/history/reports); retry when one has finished` });
  const badIds = (reply: FastifyReply, ids: [string, string, RegExp][]) => {
    for (const [name, v, re] of ids) if (!re.test(v)) return bad(reply, `${name} id ${JSON.stringify(v)} is not valid (${re === RULE_ID ? "a-z 0-9 _ -" : "A-Z a-z 0-9 _ -"})`);
    return undefined;
  };
  const unknownField = (reply: FastifyReply, b: Body, allowed: readonly string[]) => {
    const extra = Object.keys(b).find((k) => !allowed.includes(k));
    return extra === undefined ? undefined : bad(reply, `unknown field ${JSON.stringify(extra)}: the body takes ${allowed.join(", ")}`);
  };

  /** A stored version of rule `id`: the tenant's, else the shared one; `version` undefined picks the latest enabled one. */
  const stored = async (tenant: string, id: string, version?: number): Promise<{ scope: string; version: RuleVersion } | undefined> => {
    const all = (await ctx.registry.versions()).filter((v) => v.rule.id === id);
    for (const scope of [tenant, "*"]) {
      const pick = all.filter((v) => v.tenant === scope && (version === undefined ? v.rule.enabled : v.version === version)).reduce<(typeof all)[number] | undefined>((a, v) => (!a || v.version > a.version ? v : a), undefined);
      if (pick) {
        const { tenant: _t, ...v } = pick;
        return { scope, version: v };
      }
    }
    return undefined;
  };

  app.addHook("preClose", async () => {
    for (const j of jobs.values()) j.ac.abort();
    const settled = Promise.allSettled([...jobs.values()].map((j) => j.done));
    await Promise.race([settled, new Promise((r) => setTimeout(r, STOP_WAIT_MS).unref())]);
  });

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
      if (badIds(reply, [["tenant", tenant, ID_TOKEN], ["rule", id, RULE_ID]])) return reply;
      const format = req.query.format ?? "json";
      if (format !== "json" && format !== "markdown") return bad(reply, `format ${JSON.stringify(format)} is not json or markdown`);
      const b = req.body;
      if (!isObject(b)) return bad(reply, 'the body must be a candidate rule (a JSON object, as PUT takes it) or {"version": N}, a stored version of the rule');
      if (b.id !== undefined && b.id !== id) return bad(reply, `body id ${JSON.stringify(b.id)} does not match the path id ${id}`);
      let version: RuleVersion;
      let from: string;
      if (Object.keys(b).every((k) => k === "id" || k === "version") && b.version !== undefined) {
        if (!isPositiveInt(b.version)) return bad(reply, `version must be a positive integer, not ${JSON.stringify(b.version)}`);
        const found = await stored(tenant, id, b.version);
        if (!found) return missing(reply, `rule ${id} has no version ${b.version} in tenant ${tenant} or the shared rules`);
        version = found.version;
        from = `stored ${found.scope === "*" ? "shared" : found.scope}/${id}@${b.version}`;
      } else {
        // Validated as PUT validates a rule (RuleRegistry.put): alone here, with the rest of the rules by withVersion.
        const parsed = RuleSchema.safeParse({ ...b, id });
        const where = `(shadow candidate, tenant ${tenant})`;
        if (!parsed.success) return invalid(reply, new RulesError(zodIssues(parsed.error).map((i) => ({ file: where, rule: id, path: i.path === "(root)" ? "" : i.path, reason: i.message }))));
        const latest = (await ctx.registry.versions()).filter((v) => v.tenant === tenant && v.rule.id === id).reduce((a, v) => Math.max(a, v.version), 0);
        const n = parsed.data.version ?? latest + 1;
        version = { rule: { ...parsed.data, version: n }, version: n, effectiveFrom: parsed.data.effective_from ?? Number.NEGATIVE_INFINITY, source: "api", createdAt: new Date().toISOString() };
        from = `api (key ${req.principal?.id ?? "?"})`;
      }
      const book = ctx.rules();
      try {
        withVersion(book, tenant, version);
      } catch (err) {
        if (err instanceof RulesError) return invalid(reply, err);
        throw err;
      }
      if (jobs.size + starting >= MAX_RUNS) return tooMany(reply);

      // The report is saved as running first, under an id known now: listed meanwhile, and cancellable by DELETE.
      const ac = new AbortController();
      const created = new Date();
      const base = { kind: "shadow" as const, id: reportId("shadow", created), created_at: created.toISOString(), status: "running" as const, rule_id: id, scope: tenant, candidate: { version: version.version, from } };
      // The slot is taken before the first wait: MAX_RUNS holds however many requests arrive at once.
      const job: Job = { ac, done: Promise.resolve() };
      jobs.set(base.id, job);
      // The response's close before it was sent: the client went away.
      const gone = () => {
        if (!reply.raw.writableFinished) ac.abort();
      };
      reply.raw.on("close", gone);
      let report: ShadowReport;
      try {
        await store.save(base);
        const run = shadowRun(ctx.js, ctx.jsm, { ...evalOptions(ctx, book), scope: tenant, version, from, tenant, threads: 1, signal: ac.signal });
        job.done = run;
        report = { ...(await run), id: base.id, created_at: base.created_at };
      } catch (err) {
        await store.save({ ...base, status: "failed", error: messageOf(err) } as ReportBase).catch((e: unknown) => ctx.log.warn({ err: messageOf(e), report: base.id }, "could not save a failed shadow run's report"));
        throw err;
      } finally {
        jobs.delete(base.id);
        reply.raw.off("close", gone);
      }
      await store.save(report);
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
            version: { type: "integer", minimum: 1, description: "a stored version of the rule (the tenant's, else the shared one); default: the latest enabled one" },
            from: { type: "string", format: "date-time", description: "read the events stored from this time on (RFC 3339); default: all of them" },
            rate: { type: "number", minimum: BACKFILL_RATE.min, maximum: BACKFILL_RATE.max, default: BACKFILL_RATE.default, description: "unlocks recorded per second, at most" },
          },
        },
        response: {
          202: { description: '{ report_id, status: "running", report: "/v1/history/reports/<id>" }', type: "object" },
          400: { description: "the field that is wrong (invalid_rule: the version does not fit with the rest of the rules)", ...ErrorJson },
          404: { description: "no such stored version of the rule (or no enabled one)", ...ErrorJson },
          409: { description: "concurrent_run: a backfill of the same rule, version, tenant and start is going on", ...ErrorJson },
          ...busy,
        },
      },
    },
    async (req, reply) => {
      const { tenant, id } = req.params;
      if (badIds(reply, [["tenant", tenant, ID_TOKEN], ["rule", id, RULE_ID]])) return reply;
      const b = req.body ?? {};
      if (!isObject(b)) return bad(reply, "the body must be a JSON object: { version?, from?, rate? }");
      if (unknownField(reply, b, ["version", "from", "rate"])) return reply;
      if (b.version !== undefined && !isPositiveInt(b.version)) return bad(reply, `version must be a positive integer, not ${JSON.stringify(b.version)}`);
      const fromTime = b.from === undefined ? undefined : rfc3339(b.from);
      if (b.from !== undefined && fromTime === undefined) return bad(reply, `from must be an RFC 3339 time with a zone (e.g. 2026-05-01T00:00:00Z), not ${JSON.stringify(b.from)}`);
      const rate = b.rate ?? BACKFILL_RATE.default;
      if (typeof rate !== "number" || !Number.isFinite(rate) || rate < BACKFILL_RATE.min || rate > BACKFILL_RATE.max) return bad(reply, `rate must be a number of unlocks per second from ${BACKFILL_RATE.min} to ${BACKFILL_RATE.max}, not ${JSON.stringify(b.rate)}`);
      const found = await stored(tenant, id, b.version as number | undefined);
      if (!found) return missing(reply, b.version === undefined ? `rule ${id} has no enabled version in tenant ${tenant} or the shared rules` : `rule ${id} has no version ${b.version} in tenant ${tenant} or the shared rules`);
      const key = backfillKey(found.scope, found.version, tenant, fromTime);
      const other = backfills.get(key);
      if (other) {
        const what = `a backfill of ${id}@${found.version.version} for tenant ${tenant}${b.from ? ` from ${String(b.from)}` : ""}`;
        const message = other === STARTING ? `${what} is starting in this process: wait for it` : `${what} is going on in this process (report ${other}): wait for it, or stop it (DELETE /v1/history/reports/${other})`;
        return reply.code(409).send({ error: "concurrent_run", message, ...(other === STARTING ? {} : { report_id: other }) });
      }
      if (jobs.size + starting >= MAX_RUNS) return tooMany(reply);

      const ac = new AbortController();
      let last: ReportBase | undefined;
      let started!: (id: string) => void;
      const first = new Promise<string>((resolve) => (started = resolve));
      const tap = new TappedStore(ctx.buckets.history, (r) => {
        last = r;
        started(r.id);
      });
      backfills.set(key, STARTING);
      starting++;
      const run = backfill(
        { js: ctx.js, jsm: ctx.jsm, records: ctx.buckets.unlocks, state: ctx.buckets.state, store: tap },
        { ...evalOptions(ctx, ctx.rules()), scope: found.scope, version: found.version, tenant, ...(fromTime !== undefined ? { fromTime } : {}), unlocksPerSecond: rate, threads: 1, signal: ac.signal },
      );
      let reportIdNow: string;
      try {
        reportIdNow = await Promise.race([first, run.then((r) => r.id)]);
      } catch (err) {
        backfills.delete(key);
        if (err instanceof RulesError) return invalid(reply, err);
        if (err instanceof ConcurrentRunError) return reply.code(409).send({ error: "concurrent_run", message: err.message });
        throw err;
      } finally {
        starting--;
      }
      const rid = reportIdNow;
      backfills.set(key, rid);
      const done = run.then(
        (r: BackfillReport) => ctx.log.info({ report: rid, rule: id, tenant, status: r.status, recorded: r.recorded, already_recorded: r.already_recorded }, "backfill finished"),
        async (err: unknown) => {
          ctx.log.error({ err: messageOf(err), report: rid, rule: id, tenant }, "backfill failed");
          if (last) await store.save({ ...last, status: "failed", error: messageOf(err) } as ReportBase).catch(() => undefined);
        },
      );
      jobs.set(rid, { ac, done });
      void done.finally(() => {
        jobs.delete(rid);
        backfills.delete(key);
      });
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
        return await rebuildUser({ js: ctx.js, jsm: ctx.jsm, state: ctx.buckets.state, seen: ctx.buckets.seen, unlocks: ctx.buckets.unlocks, store }, tenant, user, { ...evalOptions(ctx, ctx.rules()), force: b.force === true });
      } catch (err) {
        if (err instanceof HistoryIncompleteError) return reply.code(409).send({ error: "history_incomplete", message: err.message, ...err.details });
        throw err;
      }
    },
  );

  app.get("/v1/history/reports", { config: admin, schema: { summary: "The newest history reports (shadow runs, backfills, rebuilds), newest first", tags, response: { 200: { description: "{ reports: [...] }: each with kind, id, created_at, status and its kind's numbers", type: "object" } } } }, async () => ({ reports: await store.list() }));

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
      const job = jobs.get(req.params.id);
      if (!job) return missing(reply, `no run ${JSON.stringify(req.params.id.slice(0, 64))} is going on in this API process (finished, or running in another process)`);
      job.ac.abort();
      return reply.code(202).send({ cancelled: true });
    },
  );
}

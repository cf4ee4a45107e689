/**
 * History over HTTP against a real engine: a shadow run of a candidate rule
 * version (JSON and markdown), a backfill in the background (202, its report,
 * refused twice at once, cancelled and resumed), a user's achievements as of
 * an event time, a rebuild that takes in backfilled unlocks, and a rebuild
 * refused once the events stream no longer holds all history.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { Streams } from "../../src/nats/mod.ts";
import { apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

type Report = { kind: string; id: string; status: string; [k: string]: unknown };

describe("history over the API", () => {
  let nats: TestNats;
  let engine: Engine;
  const api = async <T = Record<string, unknown>>(path: string, init: RequestInit & { json?: unknown } = {}) => {
    const { json, ...rest } = init;
    const res = await apiFetch(engine, path, { ...rest, ...(json !== undefined ? { headers: { "content-type": "application/json" }, body: JSON.stringify(json) } : {}) });
    const text = await res.text();
    return { status: res.status, type: res.headers.get("content-type") ?? "", text, body: (res.headers.get("content-type")?.startsWith("application/json") ? JSON.parse(text) : undefined) as T };
  };
  const post = <T = Record<string, unknown>>(path: string, json: unknown) => api<T>(path, { method: "POST", json });
  const report = (id: string) => api<Report>(`/v1/history/reports/${id}`);
  const finished = (id: string, status = "done") =>
    eventually(async () => {
      const r = (await report(id)).body;
      return r.status === status ? r : undefined;
    }, 20_000, `report ${id} ${status}`);
  const achievements = (user: string, query = "") => api<{ unlocked: { achievement_id: string; rule_version: number }[]; computed_from?: string }>(`/v1/tenants/acme/users/${user}/achievements${query}`);
  const USERS = ["h2", "h3", "h4", "h5", "h6", "h7"];

  beforeAll(async () => {
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { http: { rateLimit: { perKey: 0, perTenant: 0 } } });
    // acme's inviter (v1) needs two invites: h1 has three, the others one each.
    await publishAll(nats.js, [ev("acme", "h1", "team.invited"), ev("acme", "h1", "team.invited"), ev("acme", "h1", "team.invited"), ...USERS.map((u) => ev("acme", u, "team.invited"))]);
    await eventually(async () => {
      const s = engine.stats.snapshot();
      return (s.applied ?? 0) + (s.unchanged ?? 0) >= 9 && s.unlocks === 1 ? true : undefined;
    }, 20_000, "the events applied");
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  it("shadow-runs a candidate version over the tenant's history, as JSON and markdown, and keeps the report", async () => {
    const candidate = { type: "count", event: "team.invited", target: 1, title: "Team player" };
    const res = await post<Report & { totals: Record<string, number>; candidate: { version: number }; in_force: number[]; achievements: { achievement_id: string; now: number; candidate: number }[] }>("/v1/tenants/acme/rules/inviter/shadow", candidate);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ kind: "shadow", status: "done", rule_id: "inviter", scope: "acme", candidate: { version: 2 }, in_force: [1] });
    // h1 had it at the second invite: with one invite needed, at the first.
    expect(res.body.totals).toMatchObject({ gain: 6, gain_users: 6, lose: 0, move: 1, move_users: 1 });
    expect(res.body.achievements).toEqual([expect.objectContaining({ achievement_id: "inviter", now: 1, candidate: 7 })]);
    const stored = await report(res.body.id);
    expect(stored.status).toBe(200);
    expect(stored.body).toMatchObject({ id: res.body.id, status: "done", totals: res.body.totals });
    const list = await api<{ reports: Report[] }>("/v1/history/reports");
    expect(list.body.reports[0]).toMatchObject({ id: res.body.id, kind: "shadow" });

    const md = await api(`/v1/tenants/acme/rules/inviter/shadow?format=markdown`, { method: "POST", json: { version: 1 } });
    expect(md.status).toBe(200);
    expect(md.type).toMatch(/^text\/markdown/);
    expect(md.text).toContain("## Shadow run");
    expect(md.text).toContain("stored acme/inviter@1");
    const asMd = await api(`/v1/history/reports/${res.body.id}?format=markdown`);
    expect(asMd.type).toMatch(/^text\/markdown/);
    expect(asMd.text).toContain("| inviter |");
  });

  it("refuses a shadow run of an invalid candidate, a missing version or a bad format, naming the field", async () => {
    const bad = await post<{ error: string; problems: { path: string }[] }>("/v1/tenants/acme/rules/inviter/shadow", { type: "count", event: "team.invited", target: -1 });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe("invalid_rule");
    expect(bad.body.problems.map((p) => p.path)).toContain("target");
    const ghost = await post<{ error: string; problems: { reason: string }[] }>("/v1/tenants/acme/rules/inviter/shadow", { type: "count", event: "team.invited", target: 1, prerequisites: ["ghost"] });
    expect(ghost.status).toBe(400);
    expect(ghost.body.error).toBe("invalid_rule");
    expect((await post("/v1/tenants/acme/rules/inviter/shadow", { version: 9 })).status).toBe(404);
    expect((await post("/v1/tenants/acme/rules/inviter/shadow", { version: "1" })).body).toMatchObject({ error: "bad_request", message: expect.stringContaining("version") });
    expect((await post("/v1/tenants/acme/rules/inviter/shadow", { id: "other", version: 1 })).status).toBe(400);
    expect((await api("/v1/tenants/acme/rules/inviter/shadow?format=html", { method: "POST", json: { version: 1 } })).body).toMatchObject({ error: "bad_request", message: expect.stringContaining("format") });
  });

  it("answers a user's achievements as of an event time, from the log", async () => {
    const live = await achievements("h1");
    expect(live.body.unlocked).toEqual([expect.objectContaining({ achievement_id: "inviter", rule_version: 1 })]);
    expect(live.body.computed_from).toBeUndefined();
    const before = await achievements("h1", "?as_of=2026-01-01T00:00:00Z");
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({ computed_from: "history", unlocked: [] });
    const after = await achievements("h1", `?as_of=${encodeURIComponent("2030-01-01T00:00:00+01:00")}`);
    expect(after.body).toMatchObject({ computed_from: "history", as_of: "2029-12-31T23:00:00.000Z" });
    expect(after.body.unlocked).toEqual(live.body.unlocked);
    for (const q of ["yesterday", "2026-01-01", "2026-01-01T00:00:00"]) {
      const r = await achievements("h1", `?as_of=${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body).toMatchObject({ error: "bad_request", message: expect.stringContaining("as_of") });
    }
  });

  it("backfills a new version in the background: 202, its report, never twice at once; cancelled and resumed", async () => {
    expect((await api("/v1/tenants/acme/rules/inviter", { method: "PUT", json: { type: "count", event: "team.invited", target: 1 } })).status).toBe(201);
    for (const [body, field] of [[{ rate: 0 }, "rate"], [{ from: "yesterday" }, "from"], [{ version: 0 }, "version"], [{ speed: 1 }, "speed"]] as const) {
      const r = await post("/v1/tenants/acme/rules/inviter/backfill", body);
      expect(r.status, field).toBe(400);
      expect(r.body, field).toMatchObject({ error: "bad_request", message: expect.stringContaining(field) });
    }
    expect((await post("/v1/tenants/acme/rules/inviter/backfill", { version: 7 })).status).toBe(404);

    // From a start time (its own checkpoint), slowly: cancelled, then resumed by the next run with the same start.
    const slow = { from: "2020-01-01T00:00:00Z", rate: 1 };
    const started = await post<{ report_id: string; status: string; report: string }>("/v1/tenants/acme/rules/inviter/backfill", slow);
    expect(started.status).toBe(202);
    expect(started.body).toEqual({ report_id: expect.any(String), status: "running", report: `/v1/history/reports/${started.body.report_id}` });
    const twice = await post("/v1/tenants/acme/rules/inviter/backfill", slow);
    expect(twice.status).toBe(409);
    expect(twice.body).toMatchObject({ error: "concurrent_run", message: expect.stringContaining(started.body.report_id) });
    expect((await api(`/v1/history/reports/${started.body.report_id}`, { method: "DELETE" })).body).toEqual({ cancelled: true });
    await finished(started.body.report_id, "cancelled");
    await eventually(async () => ((await api(`/v1/history/reports/${started.body.report_id}`, { method: "DELETE" })).status === 404 ? true : undefined), 10_000, "the run gone");
    const resumed = await post<{ report_id: string }>("/v1/tenants/acme/rules/inviter/backfill", { ...slow, rate: 10_000 });
    expect(resumed.status).toBe(202);
    expect(resumed.body.report_id).toBe(started.body.report_id);
    const done = await finished(resumed.body.report_id);
    expect(done).toMatchObject({ kind: "backfill", rule_id: "inviter", version: 2, scope: "acme", implied: 7, from: "2020-01-01T00:00:00.000Z", resumed_at: expect.any(Number) });
    expect(Number(done.recorded) + Number(done.already_recorded)).toBe(7);

    // All of history, by default the latest enabled version: everything is recorded by now.
    const all = await post<{ report_id: string }>("/v1/tenants/acme/rules/inviter/backfill", {});
    expect(all.status).toBe(202);
    expect(await finished(all.body.report_id)).toMatchObject({ version: 2, implied: 7, recorded: 0, already_recorded: 7, would_lose: 0 });
  });

  it("rebuilds a user's state, taking in the unlocks a backfill recorded", async () => {
    // The backfill marked its unlock in the user's state already; a rebuild from the log keeps it from the record.
    expect((await achievements("h2")).body.unlocked).toEqual([expect.objectContaining({ achievement_id: "inviter", rule_version: 2 })]);
    expect((await post("/v1/tenants/acme/users/h2/rebuild", { force: "yes" })).body).toMatchObject({ error: "bad_request", message: expect.stringContaining("force") });
    expect((await post("/v1/tenants/acme/users/bad.user/rebuild", {})).status).toBe(400);
    const r = await post<Report & { kept_from_records: string[] }>("/v1/tenants/acme/users/h2/rebuild", {});
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ kind: "rebuild", tenant_id: "acme", user_id: "h2", status: "done" });
    expect(r.body.kept_from_records.length).toBe(1);
    expect((await achievements("h2")).body.unlocked).toEqual([expect.objectContaining({ achievement_id: "inviter", rule_version: 2 })]);
    expect((await report(r.body.id)).body).toMatchObject({ kind: "rebuild", user_id: "h2" });
  });

  it("refuses a rebuild once the stream no longer holds all history, unless forced", async () => {
    const info = await nats.jsm.streams.info(Streams.Events);
    await nats.jsm.streams.purge(Streams.Events, { seq: info.state.first_seq + 1 });
    const r = await post<{ error: string; message: string; horizon: { complete: boolean }; progress_at_risk: string[] }>("/v1/tenants/acme/users/h1/rebuild", {});
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ error: "history_incomplete", horizon: { complete: false } });
    expect(r.body.message).toMatch(/no longer holds all history/);
    const forced = await post<Report>("/v1/tenants/acme/users/h1/rebuild", { force: true });
    expect(forced.status).toBe(200);
    expect(forced.body).toMatchObject({ kind: "rebuild", coverage: { forced: true } });
  });
});

describe("a long shadow run over the API", () => {
  let nats: TestNats;
  let engine: Engine;
  const shadow = (signal?: AbortSignal) =>
    apiFetch(engine, "/v1/tenants/acme/rules/inviter/shadow", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ version: 1 }), ...(signal ? { signal } : {}) });
  /** The report of the shadow run going on, once it is listed as running. */
  const running = (after: string) =>
    eventually(async () => {
      const { reports } = (await (await apiFetch(engine, "/v1/history/reports")).json()) as { reports: Report[] };
      return reports.find((r) => r.kind === "shadow" && r.status === "running" && r.id > after);
    }, 10_000, "a running shadow run listed");
  const settled = (id: string) =>
    eventually(async () => {
      const r = (await (await apiFetch(engine, `/v1/history/reports/${id}`)).json()) as Report & { coverage?: { events: number } };
      return r.status !== "running" ? r : undefined;
    }, 20_000, `report ${id} settled`);
  const EVENTS = 40_000;

  beforeAll(async () => {
    nats = await startTestNats(4);
    // No workers: the events are only history here.
    engine = await startTestEngine(nats.url, { worker: { enabled: false }, http: { rateLimit: { perKey: 0, perTenant: 0 } } });
    const events = Array.from({ length: EVENTS }, (_, i) => ev("acme", `bulk${i % 500}`, "team.invited"));
    for (let i = 0; i < events.length; i += 5000) await publishAll(nats.js, events.slice(i, i + 5000));
  }, 60_000);
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  it("stops when the client goes away, or on DELETE, keeps the partial report, and answers other requests meanwhile", async () => {
    const gone = new AbortController();
    const first = shadow(gone.signal).catch((err: Error) => err.name);
    const a = await running("");
    // The run shares the event loop: other requests are answered while it reads.
    expect((await apiFetch(engine, "/healthz")).status).toBe(200);
    gone.abort();
    expect(await first).toBe("AbortError");
    const cancelled = await settled(a.id);
    expect(cancelled.status).toBe("cancelled");
    expect(cancelled.coverage!.events).toBeLessThan(EVENTS);

    const second = shadow();
    const b = await running(a.id);
    expect((await (await apiFetch(engine, `/v1/history/reports/${b.id}`, { method: "DELETE" })).json())).toEqual({ cancelled: true });
    const res = await second;
    expect(res.status).toBe(200);
    const body = (await res.json()) as Report & { coverage: { events: number } };
    expect(body).toMatchObject({ id: b.id, status: "cancelled" });
    expect(body.coverage.events).toBeLessThan(EVENTS);
    expect((await settled(b.id)).status).toBe("cancelled");
  });
});

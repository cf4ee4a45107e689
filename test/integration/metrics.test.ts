/**
 * `/metrics` as Prometheus sees it: a real Prometheus server scrapes the
 * engine (with a key that holds only the `metrics` scope) while a known
 * stream goes through — unlocks, a JetStream-window duplicate, an
 * event-record duplicate, a fingerprint match, rejects over NATS and over
 * HTTP, a late event, an event no rule looks at — and PromQL answers the
 * numbers that stream must give. Then 10,000 tenants send one event each:
 * the tenant label keeps `metrics.maxTenants` values plus `other`, and no
 * event goes uncounted. `promtool check metrics` finds nothing wrong with
 * any `achd_` metric.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { eventSubject } from "../../src/events/mod.ts";
import { apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { PROMTOOL, startPrometheus, type Sample, type TestPrometheus } from "../helpers/prometheus.ts";
import { ev, publishAll, publishRaw } from "../helpers/stream.ts";

const MAX_TENANTS = 3;

describe("Prometheus metrics", () => {
  let nats: TestNats;
  let engine: Engine;
  let prom: TestPrometheus;
  let metricsKey: string;

  beforeAll(async () => {
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { metrics: { maxTenants: MAX_TENANTS }, dedup: { fingerprints: [{ event: "purchase.placed", fields: ["payload.order_id"], within: "10m" }] } });
    const res = await apiFetch(engine, "/v1/keys", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ scopes: ["metrics"], name: "prometheus" }) });
    expect(res.status).toBe(201);
    metricsKey = ((await res.json()) as { key: string }).key;
    prom = await startPrometheus([{ url: `${engine.httpUrl}/metrics`, bearer: metricsKey }]);
  }, 90_000);
  afterAll(async () => {
    await prom?.stop();
    await engine?.stop();
    await nats?.cleanup();
  });

  /** The value of each series of `expr`, by the label `by` (or "" for one series). */
  const values = async (expr: string, by?: string) => Object.fromEntries((await prom.query(expr)).map((s: Sample) => [by ? s.metric[by] : "", s.value]));
  /** Waits until Prometheus' last scrape shows `expected` for `expr` (the failure says what it showed last). */
  const scraped = async (expr: string, expected: Record<string, number>, by?: string) => {
    let last: Record<string, number> = {};
    const same = (a: Record<string, number>) => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(expected).sort());
    await eventually(async () => same((last = await values(expr, by))) || undefined, 30_000, expr).catch(() => undefined);
    expect(last, expr).toEqual(expected);
  };

  it("refuses /metrics without a key, and with a tenant key; Prometheus scrapes it with a metrics key", async () => {
    expect((await fetch(`${engine.httpUrl}/metrics`)).status).toBe(401);
    const tenantKey = await apiFetch(engine, "/v1/keys", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tenant: "globex", scopes: ["read"] }) }).then((r) => r.json() as Promise<{ key: string }>);
    expect((await fetch(`${engine.httpUrl}/metrics`, { headers: { authorization: `Bearer ${tenantKey.key}` } })).status).toBe(403);
    // A metrics key reads nothing else.
    expect((await fetch(`${engine.httpUrl}/v1/status`, { headers: { authorization: `Bearer ${metricsKey}` } })).status).toBe(403);
    const up = await eventually(async () => ((await prom.targets())[0]?.health === "up" ? prom.targets() : undefined), 30_000, "the engine's target up");
    expect(up[0]!.lastError).toBe("");
  });

  it("counts a known stream: received, applied, each kind of duplicate, rejects by reason and origin, late, unlocks per achievement", async () => {
    // globex/m1: five lessons → first-lesson and five-lessons.
    const lessons = [1, 2, 3, 4, 5].map(() => ev("globex", "m1", "lesson.completed", { duration_seconds: 30 }));
    await publishAll(nats.js, lessons);
    // Published again without its msg id: JetStream stores it, the user's event record knows it (a record duplicate).
    await publishAll(nats.js, [lessons[0]!], { msgId: false });
    // globex/m2: one lesson over HTTP, sent twice: the second is caught by JetStream's duplicate window.
    const http = ev("globex", "m2", "lesson.completed", { duration_seconds: 30 });
    for (let i = 0; i < 2; i++) {
      const r = await apiFetch(engine, "/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(http) });
      expect(r.status).toBe(200);
    }
    // globex/m3: the same purchase reported twice under two event ids: the second matches the fingerprint.
    await publishAll(nats.js, [ev("globex", "m3", "purchase.placed", { order_id: "o-1" }), ev("globex", "m3", "purchase.placed", { order_id: "o-1" }, { source: "support-tool" })]);
    // globex/m4: an event no rule looks at (it changes nothing).
    await publishAll(nats.js, [ev("globex", "m4", "app.opened")]);
    // Rejects: bad JSON over NATS (the worker), an invalid event over HTTP (the API).
    await publishRaw(nats.js, eventSubject("globex", "m5", "lesson.completed"), "{not json", "bad-1");
    const bad = await apiFetch(engine, "/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...ev("globex", "m6", "lesson.completed"), occurred_at: "yesterday" }) });
    expect(bad.status).toBe(422);
    // globex/m7: step.b is released by the reorder window before step.a arrives: step.a is late.
    const t = Date.UTC(2026, 3, 13, 10, 0, 0);
    await publishAll(nats.js, [ev("globex", "m7", "step.b", {}, { occurred_at: new Date(t + 5000).toISOString() })]);
    await new Promise((r) => setTimeout(r, engine.config.reorder.window + 700));
    await publishAll(nats.js, [ev("globex", "m7", "step.a", {}, { occurred_at: new Date(t).toISOString() })]);

    // 5 + 1 (again) + 1 + 2 + 1 + 1 (bad JSON) + 2 (steps) delivered to the workers.
    await scraped('achd_events_received_total{tenant="globex"}', { "": 13 });
    // 5 lessons, m2's lesson, m3's first purchase and step.b (a sequence remembers every step it sees); m4's event
    // changed nothing, so nothing was stored.
    await scraped('achd_events_applied_total{tenant="globex"}', { "": 8 });
    await scraped('achd_events_duplicate_total{tenant="globex"}', { window: 1, record: 1, fingerprint: 1 }, "kind");
    await scraped('achd_events_late_total{tenant="globex"}', { "": 1 });
    await scraped('label_join(achd_dead_letters_total{tenant="globex"}, "reason_origin", "/", "reason", "origin")', { "bad_json/worker": 1, "invalid_event/http": 1 }, "reason_origin");
    await scraped('achd_unlocks_total{tenant="globex"}', { "first-lesson": 2, "five-lessons": 1 }, "achievement");
    // Each unlock's latency was measured from its trigger's arrival in the stream.
    await scraped("achd_unlock_latency_seconds_count", { "": 3 });
    await scraped("achd_dlq_messages", { "": 2 });
    // Writes: m1 and m2 and m3 and m7 stored state at least once; each unlock is one create-only publish.
    await scraped("achd_unlock_writes_total", { "": 3 });
    expect((await values("achd_state_writes_total"))[""]).toBeGreaterThanOrEqual(4);
    expect((await values("achd_rule_evaluation_seconds_count"))[""]).toBeGreaterThanOrEqual(10);
    expect((await values("achd_partitions_owned"))[""]).toBe(4);
    expect(await values("sum(achd_consumer_pending_messages)")).toEqual({ "": 0 });
    // The HTTP requests, by route pattern and status.
    expect(await values('achd_http_requests_total{route="/v1/events",method="POST"}', "status")).toEqual({ "200": 2, "422": 1 });
    expect((await values('achd_http_requests_total{route="/metrics",status="200"}'))[""]).toBeGreaterThan(0);
    // The process's own metrics come along.
    expect((await values("process_resident_memory_bytes"))[""]).toBeGreaterThan(0);
    expect(Object.keys(await values("nodejs_eventloop_lag_seconds"))).toHaveLength(1);
  }, 90_000);

  it("keeps the tenant and achievement labels bounded when 10,000 tenants send one event each, and counts every event once", async () => {
    const sum = async (expr: string) => (await values(`sum(${expr})`))[""] ?? 0;
    const [applied, unlocks] = [await sum("achd_events_applied_total"), await sum("achd_unlocks_total")];
    // Each unlocks first-lesson: applied and unlocked once each, whatever is delivered twice.
    const events = Array.from({ length: 10_000 }, (_, i) => ev(`t${i}`, "u", "lesson.completed", { duration_seconds: 30 }));
    for (let i = 0; i < events.length; i += 1000) await publishAll(nats.js, events.slice(i, i + 1000));
    await scraped("sum(achd_events_applied_total)", { "": applied + 10_000 });
    await scraped("sum(achd_unlocks_total)", { "": unlocks + 10_000 });
    const tenants = Object.keys(await values("achd_events_applied_total", "tenant"));
    // globex came first; two of the new tenants got their own label; the rest count as other.
    expect(tenants).toHaveLength(MAX_TENANTS + 1);
    expect(tenants).toContain("globex");
    expect(tenants).toContain("other");
    // Achievements of the tenants counted as other are other too.
    expect(await values('achd_unlocks_total{tenant="other"}', "achievement")).toEqual({ other: expect.any(Number) });
    const series = await values('count({__name__=~"achd_.+"})');
    expect(series[""]).toBeLessThan(400);
  }, 120_000);

  it("passes promtool's checks for every achd_ metric", async () => {
    const text = await (await fetch(`${engine.httpUrl}/metrics`, { headers: { authorization: `Bearer ${metricsKey}` } })).text();
    let out = "";
    try {
      execFileSync(PROMTOOL, ["check", "metrics"], { input: text, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
    } catch (err) {
      out = `${(err as { stdout?: string }).stdout ?? ""}${(err as { stderr?: string }).stderr ?? ""}`;
    }
    // prom-client's own nodejs_* gauges end in _total (promtool says so); ours must pass clean.
    expect(out.split("\n").filter((l) => l.includes("achd_"))).toEqual([]);
  });
});

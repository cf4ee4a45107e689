/**
 * Unlocks as server-sent events: a tenant's stream gets its unlocks live,
 * each with its position in ACH_UNLOCKS as `id`; a client that reconnects
 * with `Last-Event-ID` gets exactly what it missed, in order, once; a
 * tenant key cannot open another tenant's stream; a client that stops
 * reading is cut off (with a reason) while the others go on.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { Streams } from "../../src/nats/mod.ts";
import { apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";
import { readSse, type SseEvent } from "../../bench/sse.ts";

/** A reader of one stream over fetch: the events received so far, and a way to stop. */
async function openStream(url: string, headers: Record<string, string>): Promise<{ status: number; events: SseEvent[]; close(): void; ended: Promise<void> }> {
  const ctrl = new AbortController();
  const res = await fetch(url, { headers, signal: ctrl.signal });
  const events: SseEvent[] = [];
  if (!res.ok || !res.body) return { status: res.status, events, close: () => ctrl.abort(), ended: Promise.resolve() };
  const ended = readSse(res.body as unknown as AsyncIterable<Uint8Array>, (e) => void events.push(e));
  return { status: res.status, events, close: () => ctrl.abort(), ended };
}

describe("unlocks as server-sent events", () => {
  let nats: TestNats;
  let engine: Engine;
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { http: { sse: { heartbeat: 500, maxBufferedBytes: 65_536 } } });
    for (const tenant of ["globex", "acme"]) {
      const res = await apiFetch(engine, "/v1/keys", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tenant, scopes: ["read"] }) });
      keys[tenant] = ((await res.json()) as { key: string }).key;
    }
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  const streamUrl = (tenant: string, query = "") => `${engine.httpUrl}/v1/tenants/${tenant}/unlocks/stream${query}`;
  /** globex's unlocks in the stream, by position. */
  const stored = async () => {
    const out: { seq: number; unlock_id: string; user_id: string }[] = [];
    const c = await nats.js.consumers.get(Streams.Unlocks, { filter_subjects: "ach.unlocked.globex.>" });
    const pending = (await c.info()).num_pending;
    if (pending === 0) return out;
    for await (const m of await c.fetch({ max_messages: pending, expires: 5000 })) {
      out.push({ seq: m.seq, ...m.json<{ unlock_id: string; user_id: string }>() });
      if (m.info.pending === 0) break;
    }
    return out;
  };

  it("sends a tenant's unlocks live, and nothing of another tenant's; a key of another tenant is refused", async () => {
    expect((await openStream(streamUrl("globex"), { authorization: `Bearer ${keys.acme}` })).status).toBe(403);
    expect((await openStream(streamUrl("globex"), {})).status).toBe(401);
    const s = await openStream(streamUrl("globex"), { authorization: `Bearer ${keys.globex}` });
    expect(s.status).toBe(200);
    await publishAll(nats.js, [ev("globex", "live-1", "lesson.completed"), ev("acme", "live-2", "lesson.completed")]);
    await eventually(() => (s.events.length >= 1 ? true : undefined), 20_000, "an unlock on the stream");
    await new Promise((r) => setTimeout(r, 500));
    s.close();
    const want = await stored();
    expect(s.events.map((e) => [e.event, Number(e.id), (JSON.parse(e.data) as { unlock_id: string }).unlock_id])).toEqual(want.map((u) => ["unlock", u.seq, u.unlock_id]));
  });

  it("resumes with Last-Event-ID: exactly the unlocks missed, in order, once", async () => {
    const s = await openStream(streamUrl("globex"), { authorization: `Bearer ${keys.globex}` });
    await publishAll(nats.js, [1, 2, 3].map((i) => ev("globex", `r-${i}`, "lesson.completed")));
    await eventually(() => (s.events.length >= 3 ? true : undefined), 20_000, "three unlocks");
    s.close();
    const last = s.events.at(-1)!.id!;
    // Missed while away: five users' first lessons, and acme's, which globex must not see.
    await publishAll(nats.js, [...[4, 5, 6, 7, 8].map((i) => ev("globex", `r-${i}`, "lesson.completed")), ev("acme", "r-x", "lesson.completed")]);
    await eventually(async () => ((await stored()).length >= 9 ? true : undefined), 20_000, "the missed unlocks stored");
    const again = await openStream(streamUrl("globex"), { authorization: `Bearer ${keys.globex}`, "last-event-id": last });
    // And one more while connected: live after the catch-up.
    await publishAll(nats.js, [ev("globex", "r-9", "lesson.completed")]);
    await eventually(async () => (again.events.length >= 6 ? true : undefined), 20_000, "the missed unlocks and the live one");
    await new Promise((r) => setTimeout(r, 500));
    again.close();
    const want = (await stored()).filter((u) => u.seq > Number(last));
    expect(want.map((u) => u.user_id).sort()).toEqual(["r-4", "r-5", "r-6", "r-7", "r-8", "r-9"]);
    expect(again.events.map((e) => Number(e.id))).toEqual(want.map((u) => u.seq));
    // The query parameter does the same, for clients that cannot set the header.
    const q = await openStream(streamUrl("globex", `?last_event_id=${last}&user=r-5`), { authorization: `Bearer ${keys.globex}` });
    await eventually(() => (q.events.length >= 1 ? true : undefined), 20_000, "r-5's unlock");
    await new Promise((r) => setTimeout(r, 300));
    q.close();
    expect(q.events.map((e) => (JSON.parse(e.data) as { user_id: string }).user_id)).toEqual(["r-5"]);
  });

  it("keeps backfilled unlocks quiet unless the stream asks for them", async () => {
    const quiet = await openStream(streamUrl("globex", "?user=bf-1"), { authorization: `Bearer ${keys.globex}` });
    const loud = await openStream(streamUrl("globex", "?user=bf-1&backfill=include"), { authorization: `Bearer ${keys.globex}` });
    // As a backfill publishes them: marked, each on its own unlock subject.
    const body = (id: string, backfill: boolean) => JSON.stringify({ unlock_id: id, tenant_id: "globex", user_id: "bf-1", achievement_id: "first-lesson", ...(backfill ? { backfill: true } : {}) });
    await nats.js.publish("ach.unlocked.globex.bf-1.first-lesson._.1", body("ul_backfilled", true), { msgID: "ul_backfilled" });
    await nats.js.publish("ach.unlocked.globex.bf-1.first-lesson._.2", body("ul_live", false), { msgID: "ul_live" });
    await eventually(() => (loud.events.length >= 2 && quiet.events.length >= 1 ? true : undefined), 20_000, "both streams");
    await new Promise((r) => setTimeout(r, 300));
    quiet.close();
    loud.close();
    const ids = (s: { events: SseEvent[] }) => s.events.map((e) => (JSON.parse(e.data) as { unlock_id: string }).unlock_id);
    expect(ids(quiet)).toEqual(["ul_live"]);
    expect(ids(loud)).toEqual(["ul_backfilled", "ul_live"]);
  });

  it("cuts off a client that stops reading, with a reason, while a reading client goes on", async () => {
    const metric = async (name: string) => {
      const text = await (await apiFetch(engine, "/metrics")).text();
      return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text.replace(/\{[^}]*\}/g, ""))?.[1] ?? Number.NaN);
    };
    const reader = await openStream(streamUrl("globex"), { authorization: `Bearer ${keys.globex}` });
    // A client that sends its request and never reads a byte.
    const url = new URL(streamUrl("globex"));
    const sock = connect(Number(url.port), url.hostname);
    await new Promise((r) => sock.once("connect", r));
    sock.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${keys.globex}\r\n\r\n`);
    sock.pause();
    await eventually(async () => ((await metric("achd_sse_streams")) === 2 ? true : undefined), 10_000, "two streams open");
    // Unlocks until the kernel's buffers and the 64 KiB the server keeps for a client are full (and stay full).
    let sent = 0;
    while ((await metric("achd_sse_streams")) === 2) {
      if (sent >= 40_000) throw new Error(`the slow client was not cut off after ${sent} unlocks`);
      await publishAll(nats.js, Array.from({ length: 500 }, (_, j) => ev("globex", `slow-${sent}-${j}`, "lesson.completed")));
      sent += 500;
      await new Promise((r) => setTimeout(r, 300));
    }
    const text = await (await apiFetch(engine, "/metrics")).text();
    expect(text).toMatch(/^achd_sse_streams_ended_total\{[^}]*why="slow"[^}]*\} 1$/m);
    sock.destroy();
    // The reading client got every one of them.
    await eventually(async () => (reader.events.length >= (await stored()).length - 15 ? true : undefined), 60_000, "the reader has every unlock");
    reader.close();
    expect(new Set(reader.events.map((e) => e.id)).size).toBe(reader.events.length);
  }, 120_000);

  it("resumes a Last-Event-ID past the stream's end at the end: what comes next is sent", async () => {
    const end = (await nats.jsm.streams.info(Streams.Unlocks)).state.last_seq;
    const s = await openStream(streamUrl("globex", "?user=far-1"), { authorization: `Bearer ${keys.globex}`, "last-event-id": String(end + 1_000_000) });
    expect(s.status).toBe(200);
    await publishAll(nats.js, [ev("globex", "far-1", "lesson.completed")]);
    await eventually(() => (s.events.length >= 1 ? true : undefined), 20_000, "the unlock after the made-up position");
    await new Promise((r) => setTimeout(r, 300));
    s.close();
    expect(s.events.map((e) => (JSON.parse(e.data) as { user_id: string }).user_id)).toEqual(["far-1"]);
    expect(Number(s.events[0]!.id)).toBeGreaterThan(end);
  });

  it("counts a bad stream token as a failed authentication: 401, then 429 once an address failed too often", async () => {
    const statuses: number[] = [];
    // http.rateLimit.authFailures is 60 a minute by default.
    for (let i = 0; i < 70 && !statuses.includes(429); i++) statuses.push((await openStream(streamUrl("globex", "?token=not-a-token"), {})).status);
    expect(statuses.at(-1)).toBe(429);
    expect(new Set(statuses.slice(0, -1))).toEqual(new Set([401]));
  });
});

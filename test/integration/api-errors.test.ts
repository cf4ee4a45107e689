/**
 * Hostile and unlucky requests get a clear 4xx (or 503 while NATS is away),
 * never a 500 or a hang; every rejected body is kept in the DLQ; a batch
 * answer always says what happened to each event.
 */
import { headers } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { eventMsgId, eventSubject } from "../../src/events/mod.ts";
import { apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev } from "../helpers/stream.ts";

type Letter = { seq: number; reason: string; error: string; event_id?: string; subject: string; bytes: number };

describe("clear answers to hostile requests", () => {
  let nats: TestNats;
  let engine: Engine;
  const post = (body: string) => apiFetch(engine, "/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body });
  const letters = async () => ((await (await apiFetch(engine, "/v1/dlq?limit=1000")).json()) as { dead_letters: Letter[] }).dead_letters;
  const achievements = async (t: string, u: string) => (await (await apiFetch(engine, `/v1/tenants/${t}/users/${u}/achievements`)).json()) as { unlocked: { achievement_id: string }[] };

  beforeAll(async () => {
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { http: { maxBodyBytes: 3 * 1_048_576 } });
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  it("answers a body nested 10,000 levels with 400 too_deep before parsing it, and keeps it in the DLQ", async () => {
    const deep = `{"event_id":"deep-1","payload":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;
    const res = await post(deep);
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe("too_deep");
    expect(body.message).toMatch(/nests more than 32 levels/);
    await eventually(async () => ((await letters()).some((l) => l.reason === "too_deep" && l.bytes === deep.length) ? true : undefined));
  });

  it("answers a body that is not JSON with 400 bad_json and keeps it", async () => {
    const res = await post('{"event_id": "half-');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: "bad_json", message: expect.stringContaining("not JSON") });
    await eventually(async () => ((await letters()).some((l) => l.reason === "bad_json" && l.subject === "(http)") ? true : undefined));
  });

  it("answers a body over http.maxBodyBytes with 413", async () => {
    const res = await post(JSON.stringify({ pad: "x".repeat(3 * 1_048_576) }));
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: "body_too_large" });
  });

  it("answers a batch with one bad element per event: the others are published, the bad one is rejected and kept (cut to size)", async () => {
    const good = [ev("hostile", "g1", "lesson.completed"), ev("hostile", "g2", "lesson.completed")];
    const huge = ev("hostile", "g3", "lesson.completed", { blob: "y".repeat(1_200_000) });
    const crlf = { ...ev("hostile", "g4", "lesson.completed"), event_type: "lesson\r\nX-Injected: 1" };
    const res = await post(JSON.stringify([good[0], huge, crlf, good[1]]));
    expect(res.status).toBe(200);
    const out = (await res.json()) as { results: { index: number; status: string; reason?: string; dead_letter_seq?: number }[] };
    expect(out.results.map((r) => [r.index, r.status, r.reason ?? ""])).toEqual([
      [0, "accepted", ""],
      [1, "rejected", "too_large"],
      [2, "rejected", "invalid_event"],
      [3, "accepted", ""],
    ]);
    expect(out.results.filter((r) => r.status === "rejected").every((r) => typeof r.dead_letter_seq === "number")).toBe(true);
    const kept = await letters();
    const cut = kept.find((l) => l.event_id === huge.event_id)!;
    expect(cut.bytes).toBe(256 * 1024);
    const shown = (await (await apiFetch(engine, `/v1/dlq/${cut.seq}`)).json()) as { headers: Record<string, string[]> };
    expect(Number(shown.headers["Ach-Truncated"]![0])).toBeGreaterThan(1_200_000);
    // A truncated letter goes back only with a corrected body.
    const redrive = await apiFetch(engine, `/v1/dlq/${cut.seq}/redrive`, { method: "POST" });
    expect(redrive.status).toBe(422);
    expect(kept.some((l) => l.event_id === crlf.event_id)).toBe(true);
    for (const g of good) await eventually(async () => ((await achievements("hostile", g.user_id)).unlocked.length > 0 ? true : undefined));
  });

  it("reads a __proto__ key in a payload the same over HTTP and over NATS", async () => {
    const body = (user: string) => `{"event_id":"proto-${user}","event_type":"lesson.completed","tenant_id":"hostile","user_id":"${user}","occurred_at":"2026-04-13T10:00:00Z","payload":{"__proto__":{"x":1},"constructor":{"prototype":{"y":2}}}}`;
    const http = await post(body("viahttp"));
    const answer = (await http.json()) as { results?: { status: string }[]; status?: string };
    const httpStatus = answer.results?.[0]?.status ?? answer.status;
    await nats.js.publish(eventSubject("hostile", "vianats", "lesson.completed"), new TextEncoder().encode(body("vianats")), { msgID: eventMsgId("hostile", "vianats", "proto-vianats") });
    const viaNats = await eventually(async () => {
      const a = await achievements("hostile", "vianats");
      if (a.unlocked.length) return "accepted";
      return (await letters()).some((l) => l.event_id === "proto-vianats") ? "rejected" : undefined;
    });
    expect(httpStatus).toBe(viaNats);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("evaluates a producer's event that carries the engine's internal probe header, like any other", async () => {
    const e = ev("hostile", "prober", "lesson.completed");
    const h = headers();
    h.set("Ach-Probe", "1");
    h.set("Nats-Msg-Id", eventMsgId(e.tenant_id, e.user_id, e.event_id));
    await nats.js.publish(eventSubject(e.tenant_id, e.user_id, e.event_type), new TextEncoder().encode(JSON.stringify(e)), { headers: h });
    await eventually(async () => ((await achievements("hostile", "prober")).unlocked.some((u) => u.achievement_id === "first-lesson") ? true : undefined));
  });

  it("names the user and the way back when a stored state cannot be read", async () => {
    const kv = await new Kvm(nats.nc).open("ach_state");
    await kv.put("hostile.broken", new TextEncoder().encode("{not json"));
    const res = await apiFetch(engine, "/v1/tenants/hostile/users/broken/achievements");
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe("corrupt_state");
    expect(body.message).toContain("user broken of tenant hostile");
    expect(body.message).toContain("redrive");
  });

  it("answers 503 with Retry-After while NATS is away, /readyz within a second, and recovers", async () => {
    await nats.server.kill();
    try {
      const t0 = Date.now();
      const ready = await apiFetch(engine, "/readyz");
      expect(Date.now() - t0).toBeLessThan(1500);
      expect(ready.status).toBe(503);
      const get = await apiFetch(engine, "/v1/tenants/hostile/users/g1/achievements");
      expect(get.status).toBe(503);
      expect(get.headers.get("retry-after")).toBe("1");
      expect(await get.json()).toMatchObject({ error: "unavailable" });
      const ingest = await post(JSON.stringify(ev("hostile", "g5", "lesson.completed")));
      expect(ingest.status).toBe(503);
    } finally {
      await nats.restart();
    }
    await eventually(async () => ((await apiFetch(engine, "/readyz")).status === 200 ? true : undefined), 30_000, "ready again");
    expect((await apiFetch(engine, "/v1/tenants/hostile/users/g1/achievements")).status).toBe(200);
  });

  it("says so, and counts it, when the DLQ cannot take a rejected event", async () => {
    // Last: without its DLQ stream nothing can be dead-lettered (and /readyz says not ready).
    await nats.jsm.streams.delete("ACH_DLQ");
    const res = await post(JSON.stringify({ ...ev("hostile", "nodlq", "lesson.completed"), occurred_at: "yesterday" }));
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ status: "rejected", reason: "invalid_event", dead_letter: "failed" });
    const status = (await (await apiFetch(engine, "/v1/status")).json()) as { dead_letter_failures: number };
    expect(status.dead_letter_failures).toBeGreaterThanOrEqual(1);
  });
});

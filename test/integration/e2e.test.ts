import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { eventMsgId, eventSubject } from "../../src/events/mod.ts";
import { Streams } from "../../src/nats/mod.ts";
import type { UnlockEvent } from "../../src/core/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { apiFetch, eventually, fixture, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, oracle, publishAll, publishRaw, storedUnlocks } from "../helpers/stream.ts";

type Achievements = {
  unlocked: { achievement_id: string; rule_version: number; unlocked_at: string; unlock_id: string }[];
  in_progress: { achievement_id: string; current: number; target: number }[];
};

describe("end to end on one server", () => {
  let nats: TestNats;
  let engine: Engine;
  const unlocks: UnlockEvent[] = [];

  const api = async <T>(path: string, init?: RequestInit): Promise<{ status: number; body: T }> => {
    const res = await apiFetch(engine, path, init);
    return { status: res.status, body: (await res.json()) as T };
  };
  const achievements = async (tenant: string, user: string) => (await api<Achievements>(`/v1/tenants/${tenant}/users/${user}/achievements`)).body;
  const unlocksOf = (tenant: string, user: string) => unlocks.filter((u) => u.tenant_id === tenant && u.user_id === user);

  beforeAll(async () => {
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { dedup: { fingerprints: [{ event: "purchase.placed", fields: ["payload.order_id"], within: "10m" }] } });
    const sub = nats.nc.subscribe("ach.unlocked.>");
    void (async () => {
      for await (const m of sub) unlocks.push(m.json<UnlockEvent>());
    })();
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  it("unlocks a count achievement from events published over NATS, and publishes the unlock event", async () => {
    const events = [1, 2, 3, 4, 5].map(() => ev("globex", "nats-user", "lesson.completed", { duration_seconds: 30 }));
    await publishAll(nats.js, events);
    const five = await eventually(() => unlocksOf("globex", "nats-user").find((u) => u.achievement_id === "five-lessons"), 20_000, "five-lessons unlock");
    expect(five).toMatchObject({
      tenant_id: "globex",
      user_id: "nats-user",
      rule_id: "five-lessons",
      rule_version: 1,
      tier: null,
      unlocked_at: events[4]!.occurred_at,
      trigger_event_ids: events.map((e) => e.event_id),
      reward: { points: 50 },
    });
    expect(five.unlock_id).toMatch(/^ul_[0-9a-f]{32}$/);
    expect(Date.parse(five.processed_at)).toBeGreaterThan(0);
    const first = unlocksOf("globex", "nats-user").find((u) => u.achievement_id === "first-lesson");
    expect(first?.unlocked_at).toBe(events[0]!.occurred_at);
    expect(first?.trigger_event_ids).toEqual([events[0]!.event_id]);
  });

  it("ingests over HTTP, reports per-event outcomes, and the API shows unlocks and progress", async () => {
    const events = [ev("acme", "http-user", "lesson.completed", { duration_seconds: 700 }), ev("acme", "http-user", "lesson.completed", { duration_seconds: 10 })];
    const post = await api<{ results: { status: string; event_id: string }[]; accepted: number }>("/v1/events", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ events }),
    });
    expect(post.status).toBe(200);
    expect(post.body.results.map((r) => r.status)).toEqual(["accepted", "accepted"]);
    const a = await eventually(async () => {
      const got = await achievements("acme", "http-user");
      return got.unlocked.length > 0 && got.in_progress.find((p) => p.achievement_id === "long-lessons")?.current === 1 ? got : undefined;
    });
    expect(a.unlocked).toEqual([expect.objectContaining({ achievement_id: "first-lesson", rule_version: 1, unlocked_at: events[0]!.occurred_at })]);
    // acme's own five-lessons (v3) counts only lessons of at least 60 s: one so far.
    expect(a.in_progress).toContainEqual(expect.objectContaining({ achievement_id: "five-lessons", current: 1, target: 5 }));
    expect(a.in_progress).toContainEqual(expect.objectContaining({ achievement_id: "inviter", current: 0, target: 2 }));
    // The hidden rule is not listed before it is unlocked.
    expect(a.in_progress.map((p) => p.achievement_id)).not.toContain("shopper");

    // The same event again is reported as a duplicate.
    const again = await api<{ results: { status: string }[] }>("/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(events[0]) });
    expect(again.body.results[0]!.status).toBe("duplicate");
  });

  it("answers malformed requests with 4xx and a clear body, and rejects bad events by name", async () => {
    const notJson = await apiFetch(engine, "/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: "{nope" });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: "bad_json", message: expect.stringContaining("not JSON") });
    const empty = await api<{ error: string }>("/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: "[]" });
    expect(empty.status).toBe(400);
    const bad = await api<{ status: string; reason: string; issues: { path: string }[] }>("/v1/events", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...ev("acme", "x", "lesson.completed"), user_id: "has space", occurred_at: "yesterday" }),
    });
    expect(bad.status).toBe(422);
    expect(bad.body.reason).toBe("invalid_event");
    expect(bad.body.issues.map((i) => i.path).sort()).toEqual(["occurred_at", "user_id"]);
    const badUser = await api<{ error: string; message: string }>("/v1/tenants/acme/users/a.b/achievements");
    expect(badUser.status).toBe(400);
  });

  it("counts an event_id published three times once, also when a retry comes without Nats-Msg-Id", async () => {
    const e = ev("globex", "dup-user", "lesson.completed");
    await publishAll(nats.js, [e, e, e]);
    // A retry after JetStream's duplicate window looks like a new message: the engine's own record stops it.
    await publishAll(nats.js, [e], { msgId: false });
    const marker = ev("globex", "dup-user", "purchase.placed");
    await publishAll(nats.js, [marker]);
    await eventually(async () => ((await achievements("globex", "dup-user")).unlocked.length === 1 ? true : undefined));
    await eventually(() => (engine.stats.duplicates >= 1 ? true : undefined));
    const a = await achievements("globex", "dup-user");
    expect(a.in_progress.find((p) => p.achievement_id === "five-lessons")?.current).toBe(1);
  });

  it("counts the same event_id of two tenants and two users once each: live, in simulate and in replay", async () => {
    const at = "2026-04-13T10:00:00Z";
    const same = [ev("acme", "alice-x", "lesson.completed"), ev("acme", "bob-x", "lesson.completed"), ev("globex", "alice-x", "lesson.completed")].map((e) => ({ ...e, event_id: "same-1", occurred_at: at }));
    // All at the same moment, well inside JetStream's duplicate window.
    await publishAll(nats.js, same);
    // Over HTTP too, for a fourth user.
    const http = { ...ev("globex", "carol-x", "lesson.completed"), event_id: "same-1", occurred_at: at };
    const res = await api<{ results: { status: string }[] }>("/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(http) });
    expect(res.body.results[0]!.status).toBe("accepted");
    const users = [...same, http].map((e) => [e.tenant_id, e.user_id] as const);
    for (const [t, u] of users) await eventually(async () => ((await achievements(t, u)).unlocked.some((x) => x.achievement_id === "first-lesson") ? true : undefined), 20_000, `${t}/${u} unlocked`);
    const live = (await Promise.all(users.map(async ([t, u]) => (await achievements(t, u)).unlocked.map((x) => x.unlock_id)))).flat().sort();
    const book = loadRules(fixture("rules"));
    const { simulate } = await import("../../src/sim/mod.ts");
    expect(simulate([...same, http], book).unlocks.map((u) => u.unlock_id).sort()).toEqual(live);
    const { replayStream } = await import("../../src/replay/mod.ts");
    const replayed = await replayStream(nats.js, nats.jsm, { book, maxBytes: 65_536, partitions: 4, threads: 1 });
    const mine = new Set(users.map(([t, u]) => `${t}/${u}`));
    expect(replayed.unlocks.filter((u) => mine.has(`${u.tenant_id}/${u.user_id}`)).map((u) => u.unlock_id).sort()).toEqual(live);
  });

  it("does not let a message that borrows another user's msg id suppress that user's event sent over HTTP", async () => {
    const victim = { ...ev("globex", "victim", "lesson.completed"), event_id: "guessable-7" };
    const forged = { ...ev("evil", "mallory", "lesson.completed"), event_id: "guessable-7" };
    // Published first, on the forger's own subject, with the victim's scoped msg id.
    await publishRaw(nats.js, eventSubject("evil", "mallory", "lesson.completed"), JSON.stringify(forged), eventMsgId("globex", "victim", "guessable-7"));
    const res = await api<{ results: { status: string }[] }>("/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(victim) });
    expect(res.body.results[0]!.status).toBe("accepted");
    await eventually(async () => ((await achievements("globex", "victim")).unlocked.length === 1 ? true : undefined), 20_000, "the victim's event applied");
    // The forged message is dead-lettered for its msg id, and counts for nobody.
    const letters = await eventually(async () => {
      const r = await api<{ dead_letters: { reason: string; event_id?: string }[] }>("/v1/dlq?tenant=evil&limit=1000");
      return r.body.dead_letters.find((d) => d.event_id === "guessable-7");
    });
    expect(letters.reason).toBe("msg_id_mismatch");
    expect((await achievements("evil", "mallory")).unlocked).toEqual([]);
    // A retry of the victim's event (its id is still held by the forged message in the window, so it is stored
    // again) counts once: the engine's own event-id record stops it.
    const before = engine.stats.duplicates;
    await api("/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(victim) });
    await eventually(() => (engine.stats.duplicates > before ? true : undefined), 20_000, "the retry recognised");
    expect((await achievements("globex", "victim")).in_progress.find((p) => p.achievement_id === "five-lessons")?.current).toBe(1);
  });

  it("sends invalid events to the DLQ with their reasons while valid events keep flowing", async () => {
    const good1 = ev("globex", "dlq-user", "lesson.completed");
    const good2 = ev("globex", "dlq-user", "lesson.completed");
    const mismatch = ev("globex", "someone-else", "lesson.completed");
    await publishAll(nats.js, [good1]);
    await publishRaw(nats.js, eventSubject("globex", "dlq-user", "lesson.completed"), "{not json", "bad-json-1");
    await publishRaw(nats.js, eventSubject("globex", "dlq-user", "lesson.completed"), JSON.stringify({ event_id: "missing-1", event_type: "lesson.completed" }), "missing-1");
    await publishRaw(nats.js, eventSubject("globex", "dlq-user", "lesson.completed"), JSON.stringify(mismatch), mismatch.event_id);
    const huge = ev("globex", "dlq-user", "lesson.completed", { blob: "x".repeat(70_000) });
    await publishRaw(nats.js, eventSubject("globex", "dlq-user", "lesson.completed"), JSON.stringify(huge), huge.event_id);
    await publishAll(nats.js, [good2]);

    const a = await eventually(async () => {
      const got = await achievements("globex", "dlq-user");
      return got.in_progress.find((p) => p.achievement_id === "five-lessons")?.current === 2 ? got : undefined;
    });
    expect(a.unlocked.map((u) => u.achievement_id)).toEqual(["first-lesson"]);

    const c = await nats.js.consumers.get(Streams.Dlq, { filter_subjects: "ach.dlq.globex.>" });
    const letters: { reason: string; error: string; subject: string; count: string; body: string }[] = [];
    const msgs = await c.fetch({ max_messages: 4, expires: 5000 });
    for await (const m of msgs) {
      letters.push({
        reason: m.headers!.get("Ach-Reason"),
        error: m.headers!.get("Ach-Error"),
        subject: m.headers!.get("Ach-Subject"),
        count: m.headers!.get("Ach-Delivery-Count"),
        body: m.string(),
      });
      if (letters.length === 4) break;
    }
    expect(letters.map((l) => l.reason)).toEqual(["bad_json", "invalid_event", "subject_mismatch", "too_large"]);
    expect(letters[0]).toMatchObject({ subject: "ach.events.globex.dlq-user.lesson.completed", count: "1", body: "{not json" });
    expect(letters[1]!.error).toMatch(/tenant_id/);
    expect(letters[2]!.error).toMatch(/user_id: is someone-else but the subject says dlq-user/);
    expect(letters[3]!.error).toMatch(/limit is 65536/);
    expect(engine.stats.rejected).toBeGreaterThanOrEqual(4);
  });

  it("matches the oracle for a mixed stream, and every unlock_id is stored once", async () => {
    const { generate } = await import("../helpers/stream.ts");
    const events = generate(7, 400, 15);
    await publishAll(nats.js, events);
    const book = loadRules(fixture("rules"));
    const want = oracle(events, book);
    for (const [key, state] of want) {
      const [tenant, user] = key.split(".") as [string, string];
      const got = await eventually(async () => {
        const a = await achievements(tenant, user);
        return a.unlocked.length === Object.keys(state.eval.unlocked).length ? a : undefined;
      });
      expect(got.unlocked.map((u) => u.unlock_id).sort()).toEqual(Object.values(state.eval.unlocked).map((u) => u.unlock_id).sort());
    }
    const stored = await storedUnlocks(nats.nc, nats.js);
    const ids = stored.map((u) => u.unlock_id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("lists, shows and redrives dead letters; a redriven event goes through the pipeline again", async () => {
    const user = "redrive-user";
    const good = ev("globex", user, "lesson.completed");
    // A valid body under a wrong Nats-Msg-Id: dead-lettered by the worker.
    await publishRaw(nats.js, eventSubject("globex", user, "lesson.completed"), JSON.stringify(good), "not-the-event-id");
    // Bad JSON: dead-lettered; redriven with a corrected body.
    const fixed = ev("globex", user, "lesson.completed");
    await publishRaw(nats.js, eventSubject("globex", user, "lesson.completed"), "{oops", eventMsgId("globex", user, fixed.event_id));
    type Letter = { seq: number; reason: string; event_id?: string; subject: string };
    const list = await eventually(async () => {
      const r = await api<{ dead_letters: Letter[] }>(`/v1/dlq?tenant=globex&limit=1000`);
      const mine = r.body.dead_letters.filter((d) => d.subject.includes(user));
      return mine.length === 2 ? mine : undefined;
    });
    expect(list.map((d) => d.reason)).toEqual(["msg_id_mismatch", "bad_json"]);
    const shown = await api<{ body: string; headers: Record<string, string[]> }>(`/v1/dlq/${list[0]!.seq}`);
    expect(JSON.parse(shown.body.body)).toEqual(good);
    expect(shown.body.headers["Ach-Msg-Id"]).toEqual(["not-the-event-id"]);

    const redriven = await api<{ subject: string; duplicate: boolean }>(`/v1/dlq/${list[0]!.seq}/redrive`, { method: "POST" });
    expect(redriven.status).toBe(200);
    expect(redriven.body).toMatchObject({ subject: `ach.events.globex.${user}.lesson.completed`, duplicate: false });
    const { redriveDeadLetter } = await import("../../src/pipeline/mod.ts");
    await redriveDeadLetter(nats.js, nats.jsm, list[1]!.seq, new TextEncoder().encode(JSON.stringify(fixed)));

    const a = await eventually(async () => {
      const got = await achievements("globex", user);
      return got.in_progress.find((p) => p.achievement_id === "five-lessons")?.current === 2 ? got : undefined;
    });
    expect(a.unlocked.map((u) => u.achievement_id)).toEqual(["first-lesson"]);
    // Both left the DLQ; asking again for one is a 404.
    expect((await api(`/v1/dlq/${list[0]!.seq}`)).status).toBe(404);
    // Redriving the same event a second time (e.g. from a copy) counts once.
    await publishAll(nats.js, [good], { msgId: false });
    await new Promise((r) => setTimeout(r, 300));
    expect((await achievements("globex", user)).in_progress.find((p) => p.achievement_id === "five-lessons")?.current).toBe(2);
  });

  it("sends a poisoned user's events to the DLQ with the failure history, and keeps the partition moving", async () => {
    const { Kvm } = await import("@nats-io/kv");
    // A corrupt stored state: reading it fails every time, for a reason that is not the connection.
    const kv = await new Kvm(nats.nc).open("ach_state");
    await kv.put("globex.poisoned", new TextEncoder().encode("{not json"));
    const bad = ev("globex", "poisoned", "lesson.completed");
    const fine = ev("globex", "healthy", "lesson.completed");
    await publishAll(nats.js, [bad, fine]);
    await eventually(async () => ((await achievements("globex", "healthy")).unlocked.length === 1 ? true : undefined));
    type Letter = { seq: number; reason: string; error: string; event_id?: string };
    const letter = await eventually(async () => {
      const r = await api<{ dead_letters: Letter[] }>("/v1/dlq?tenant=globex&limit=1000");
      return r.body.dead_letters.find((d) => d.event_id === bad.event_id);
    });
    expect(letter.reason).toBe("processing_failed");
    expect(letter.error.split(" | ")).toHaveLength(3);
    expect(letter.error).toMatch(/SyntaxError/);
  });

  it("collapses the same purchase from three sources through its business fingerprint", async () => {
    const user = "fp-user";
    const base = { order_id: "o-42", amount: 30 };
    const sources = ["web", "webhook", "batch-import"].map((source, i) =>
      ev("globex", user, "purchase.placed", base, { source, occurred_at: new Date(Date.UTC(2026, 3, 13, 10, 0, i * 20)).toISOString() }),
    );
    const before = engine.stats.fingerprinted;
    await publishAll(nats.js, sources);
    // shopper counts purchases from the web: the first report counts, the other two collapse into it.
    await eventually(() => (engine.stats.fingerprinted - before === 2 ? true : undefined));
    const { Kvm } = await import("@nats-io/kv");
    const kv = await new Kvm(nats.nc).open("ach_state");
    // The state is written within worker.writeBehind of its events.
    const shopper = async () => {
      const e = await kv.get(`globex.${user}`);
      return e?.value.length ? (JSON.parse(new TextDecoder().decode(e.value)) as { eval: { rules: Record<string, { n: number }> } }).eval.rules.shopper?.n : undefined;
    };
    expect(await eventually(shopper, 5000, "the stored state")).toBe(1);
    // A fourth report over HTTP is told at once that it will not count.
    const fourth = ev("globex", user, "purchase.placed", base, { source: "support-tool", occurred_at: new Date(Date.UTC(2026, 3, 13, 10, 1, 30)).toISOString() });
    const res = await api<{ results: { status: string; reason?: string; message?: string }[] }>("/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(fourth) });
    expect(res.body.results[0]).toMatchObject({ status: "duplicate", reason: "fingerprint" });
    expect(res.body.results[0]!.message).toMatch(/business fingerprint/);
    const stats = await api<{ dedup_hit_rate: number; fingerprinted: number }>("/v1/stats");
    expect(stats.body.dedup_hit_rate).toBeGreaterThan(0);
  });

  it("reorders a sequence's steps that arrive out of order within the window, and skips a step that comes too late", async () => {
    const t = Date.UTC(2026, 3, 13, 10, 0, 0);
    const at = (ms: number) => new Date(t + ms).toISOString();
    // B (later) arrives before A (earlier), close together: the window puts them back in order.
    await publishAll(nats.js, [ev("globex", "seq-ok", "step.b", {}, { occurred_at: at(5000) })]);
    await publishAll(nats.js, [ev("globex", "seq-ok", "step.a", {}, { occurred_at: at(0) })]);
    const ok = await eventually(() => unlocksOf("globex", "seq-ok").find((u) => u.achievement_id === "two-steps"), 20_000, "sequence unlock");
    expect(ok.unlocked_at).toBe(at(5000));
    // B is released (a window of wall-clock time passes) before A arrives: A is late and the sequence does not see it.
    const lateBefore = engine.stats.late;
    await publishAll(nats.js, [ev("globex", "seq-late", "step.b", {}, { occurred_at: at(5000) })]);
    await new Promise((r) => setTimeout(r, engine.config.reorder.window + 700));
    await publishAll(nats.js, [ev("globex", "seq-late", "step.a", {}, { occurred_at: at(0) })]);
    await eventually(() => (engine.stats.late > lateBefore ? true : undefined), 20_000, "a late event");
    const a = await achievements("globex", "seq-late");
    expect(a.unlocked.map((u) => u.achievement_id)).not.toContain("two-steps");
    expect(a.in_progress.find((p) => p.achievement_id === "two-steps")).toMatchObject({ step: 0, steps: 2 });
  });
});

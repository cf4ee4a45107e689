import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { UnlockRecords } from "../../src/pipeline/mod.ts";
import { Kvm, type KV } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeState, userKey, type UnlockEvent } from "../../src/core/mod.ts";
import type { Engine } from "../../src/engine.ts";
import type { EventInput } from "../../src/events/mod.ts";
import { backfill, backfillKey, HistoryStore, rebuildUser, shadowRun, userAsOf, withVersion, type ShadowRow } from "../../src/history/mod.ts";
import { Buckets, Streams } from "../../src/nats/mod.ts";
import { RuleRegistry } from "../../src/registry/mod.ts";
import { loadRules, progressOf, RuleSchema, type RuleBook, type RuleVersion } from "../../src/rules/mod.ts";
import { simulate } from "../../src/sim/mod.ts";
import { publishEvent } from "../../bench/stack.ts";
import { apiFetch, eventually, fixture, startTestEngine } from "../helpers/engine.ts";
import { drained, startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, generate, storedUnlocks } from "../helpers/stream.ts";

const BIN = fileURLToPath(new URL("../../bin/achd.js", import.meta.url));

/** Events in publish order, one at a time: the stream order is the array order. */
async function publishInOrder(nats: TestNats, events: readonly EventInput[]): Promise<void> {
  for (const e of events) await publishEvent(nats.js, e);
}

/** Each user's `lesson.completed` events of `tenant`, in order. */
function lessonsBy(events: readonly EventInput[], tenant: string): Map<string, EventInput[]> {
  const out = new Map<string, EventInput[]>();
  for (const e of events) if (e.tenant_id === tenant && e.event_type === "lesson.completed") out.set(e.user_id, [...(out.get(e.user_id) ?? []), e]);
  return out;
}

/** Every stream's message count and last sequence (KV buckets are streams too), but for the buckets live heartbeats rewrite. */
async function snapshot(nats: TestNats): Promise<Record<string, [number, number]>> {
  const out: Record<string, [number, number]> = {};
  for await (const s of nats.jsm.streams.list()) {
    if (s.config.name === `KV_${Buckets.Leases}` || s.config.name === `KV_${Buckets.Workers}`) continue;
    out[s.config.name] = [s.state.messages, s.state.last_seq];
  }
  return out;
}

describe("history: shadow runs, backfill, as-of and rebuild over the stored log", () => {
  let nats: TestNats;
  let engine: Engine;
  let book: RuleBook;
  let kv: { state: KV; seen: KV; history: KV };
  let store: HistoryStore;
  // 30 users of two tenants, about half the events lessons: counts from 0 to ~20 lessons a user.
  const events = generate(16, 700, 30, ["acme", "globex"]);
  const opts = () => ({ book, maxBytes: engine.config.events.maxBytes, partitions: 4, limits: engine.config.limits, recentIds: engine.config.worker.recentIds, fingerprints: engine.config.dedup.fingerprints, threads: 1 });
  const sharedFive = (): RuleVersion => loadRules(fixture("rules")).all().find((x) => x.tenant === "*" && x.version.rule.id === "five-lessons")!.version;
  const candidate = (target: number): RuleVersion => {
    const v = sharedFive();
    return { rule: { ...v.rule, target, version: 2 } as RuleVersion["rule"], version: 2, effectiveFrom: Number.NEGATIVE_INFINITY };
  };
  const row = (rows: ShadowRow[], id: string) => rows.find((r) => r.achievement_id === id && r.tier === null)!;
  const users = (s: { user_id: string }[]) => s.map((x) => x.user_id).sort();

  beforeAll(async () => {
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url);
    await publishInOrder(nats, events);
    await eventually(() => drained(nats.jsm, 4), 30_000, "the stream drained");
    const kvm = new Kvm(nats.nc);
    kv = { state: await kvm.open(Buckets.State), seen: await kvm.open(Buckets.Seen), history: await kvm.open(Buckets.History) };
    store = new HistoryStore(kv.history);
    book = await new RuleRegistry(await kvm.open(Buckets.Rules)).book();
  }, 90_000);
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  it("shadows an easier and a harder candidate: exact gain, lose and move lists, and writes nothing", async () => {
    // The shared five-lessons applies to globex (acme has its own version): only globex users change.
    const lessons = lessonsBy(events, "globex");
    const counts = [...lessons].map(([user, l]) => ({ user, n: l.length, l }));
    const before = await snapshot(nats);

    const easier = await shadowRun(nats.js, nats.jsm, { ...opts(), scope: "*", version: candidate(3), from: "test", samples: 1000 });
    const e = row(easier.achievements, "five-lessons");
    expect(users(e.samples.gain)).toEqual(counts.filter((c) => c.n >= 3 && c.n < 5).map((c) => c.user).sort());
    expect(e.lose).toBe(0);
    expect(users(e.samples.move)).toEqual(counts.filter((c) => c.n >= 5).map((c) => c.user).sort());
    for (const m of e.samples.move) {
      const l = lessons.get(m.user_id)!;
      expect([m.now.unlocked_at, m.candidate.unlocked_at]).toEqual([l[4]!.occurred_at, l[2]!.occurred_at]);
      expect(m.candidate.trigger_event_ids).toEqual(l.slice(0, 3).map((x) => x.event_id));
    }
    // Other achievements do not move.
    for (const r of easier.achievements.filter((r) => r.achievement_id !== "five-lessons")) expect([r.gain, r.lose, r.move], r.achievement_id).toEqual([0, 0, 0]);
    expect(easier.coverage).toMatchObject({ events: events.length, from_seq: 1, to_seq: events.length, rejected: 0 });
    expect(easier.coverage.horizon).toMatchObject({ complete: true, first_seq: 1 });
    expect(easier.totals.gain_users).toBe(e.gain_users);

    const harder = await shadowRun(nats.js, nats.jsm, { ...opts(), scope: "*", version: candidate(8), from: "test", samples: 1000, tenant: "globex" });
    const h = row(harder.achievements, "five-lessons");
    expect(h.gain).toBe(0);
    expect(users(h.samples.lose)).toEqual(counts.filter((c) => c.n >= 5 && c.n < 8).map((c) => c.user).sort());
    expect(users(h.samples.move)).toEqual(counts.filter((c) => c.n >= 8).map((c) => c.user).sort());
    for (const m of h.samples.move) expect(m.candidate.unlocked_at).toBe(lessons.get(m.user_id)![7]!.occurred_at);
    // Read with a tenant filter: only globex's events.
    expect(harder.coverage.events).toBe(events.filter((x) => x.tenant_id === "globex").length);

    expect(await snapshot(nats)).toEqual(before);
  });

  it("refuses a candidate that does not fit the other rules, naming it", () => {
    const bad: RuleVersion = { rule: RuleSchema.parse({ id: "combo", type: "composite", of: ["no-such-rule"] }), version: 1, effectiveFrom: Number.NEGATIVE_INFINITY };
    expect(() => withVersion(book, "*", bad)).toThrow(/combo/);
  });

  it("answers as of several instants exactly as a brute-force evaluation of the events before each", async () => {
    const lessons = lessonsBy(events, "globex");
    const [user, l] = [...lessons].sort((a, b) => b[1].length - a[1].length)[0]!;
    const mine = events.filter((e) => e.tenant_id === "globex" && e.user_id === user);
    const t = (e: EventInput) => Date.parse(e.occurred_at);
    for (const at of [t(mine[0]!) - 1, t(l[2]!) + 500, t(l[4]!), t(l[4]!) - 1, t(mine.at(-1)!) + 60_000]) {
      const got = await userAsOf(nats.js, nats.jsm, "globex", user, at, opts());
      const sim = simulate(
        mine.filter((e) => t(e) <= at),
        book,
        engine.config.worker.recentIds,
        [],
        { storedAt: Date.now() },
      );
      const state = sim.states.get(userKey("globex", user));
      expect(got.computed_from).toBe("history");
      expect(got.unlocked.map((u) => u.unlock_id).sort(), new Date(at).toISOString()).toEqual(Object.values(state?.eval.unlocked ?? {}).map((u) => u.unlock_id).sort());
      expect(got.in_progress).toEqual(state ? progressOf(state.eval, book.forTenant("globex").at(at), at) : got.in_progress);
      expect(got.coverage.applied_before).toBe(mine.filter((e) => t(e) <= at).length);
    }
    // Five lessons in, five-lessons is unlocked at the fifth; a millisecond before, it is not.
    const at5 = await userAsOf(nats.js, nats.jsm, "globex", user, t(l[4]!), opts());
    const before5 = await userAsOf(nats.js, nats.jsm, "globex", user, t(l[4]!) - 1, opts());
    expect(at5.unlocked.map((u) => u.achievement_id)).toContain("five-lessons");
    expect(before5.unlocked.map((u) => u.achievement_id)).not.toContain("five-lessons");
    expect(before5.in_progress).toContainEqual(expect.objectContaining({ achievement_id: "five-lessons", current: 4, target: 5 }));
  });

  it("rebuilds a user whose stored state is garbage to the state a clean replay gives, and the worker goes on from it", async () => {
    const user = "rebuilt";
    const first = [1, 2, 3, 4].map(() => ev("globex", user, "lesson.completed", { duration_seconds: 700 }));
    await publishInOrder(nats, first);
    await eventually(() => drained(nats.jsm, 4), 30_000, "drained");
    const key = userKey("globex", user);
    await kv.state.put(key, new TextEncoder().encode("{not the engine's json"));
    // The fifth lesson fails on the unreadable state: dead-lettered, its unlock not given.
    const dlqBefore = (await nats.jsm.streams.info(Streams.Dlq)).state.messages;
    const fifth = ev("globex", user, "lesson.completed", { duration_seconds: 700 });
    await publishInOrder(nats, [fifth]);
    await eventually(async () => ((await nats.jsm.streams.info(Streams.Dlq)).state.messages > dlqBefore ? true : undefined), 30_000, "the fifth lesson dead-lettered");
    await eventually(() => drained(nats.jsm, 4), 30_000, "drained");

    const report = await rebuildUser({ js: nats.js, jsm: nats.jsm, state: kv.state, seen: kv.seen, records: new UnlockRecords(nats.js, nats.jsm), store }, "globex", user, opts());
    expect(report.previous).toMatch(/^corrupt: /);
    const all = [...first, fifth];
    const clean = simulate(all, book, engine.config.worker.recentIds, [], { storedAt: Date.now() }).states.get(key)!;
    const stored = decodeState((await kv.state.get(key))!.value);
    expect(stored.eval).toEqual(clean.eval);
    expect(report.coverage.events).toBe(5);
    // five-lessons, earned by the event that failed, is delivered by the rebuild: once, with the fifth lesson's time.
    const five = Object.values(clean.eval.unlocked).find((u) => u.rule_id === "five-lessons")!;
    expect(report.delivered).toContain(five.unlock_id);
    const published = (await storedUnlocks(nats.nc, nats.js)).filter((u) => u.unlock_id === five.unlock_id);
    expect(published.map((u) => u.unlocked_at)).toEqual([fifth.occurred_at]);
    expect((await store.get(report.id))?.kind).toBe("rebuild");

    // The worker reads the rebuilt state on the user's next event (nothing unreadable stays in its cache).
    const sixth = ev("globex", user, "lesson.completed", { duration_seconds: 700 });
    await publishInOrder(nats, [sixth]);
    const want = simulate([...all, sixth], book, engine.config.worker.recentIds, [], { storedAt: Date.now() }).states.get(key)!;
    await eventually(async () => {
      const s = decodeState((await kv.state.get(key))!.value);
      return isDeepStrictEqual(s.eval, want.eval) ? true : undefined;
    }, 30_000, "the sixth lesson applied on the rebuilt state");
  });

  it("backfills a new rule quietly and backdated, records nothing on a rerun, and live events do not unlock it again", async () => {
    const put = await apiFetch(engine, "/v1/tenants/globex/rules/three-lessons", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ type: "count", event: "lesson.completed", target: 3 }) });
    expect(put.status).toBe(201);
    const registry = new RuleRegistry(await new Kvm(nats.nc).open(Buckets.Rules));
    const withRule = await registry.book();
    const version = (await registry.versions()).find((v) => v.rule.id === "three-lessons")!;
    const lessons = lessonsBy(events, "globex");
    const want = [...lessons].filter(([, l]) => l.length >= 3).map(([user, l]) => ({ user, at: l[2]!.occurred_at }));
    const deps = { js: nats.js, jsm: nats.jsm, records: new UnlockRecords(nats.js, nats.jsm), store, state: kv.state };

    const r1 = await backfill(deps, { ...opts(), book: withRule, scope: "globex", version, tenant: "globex", unlocksPerSecond: 2000 });
    expect(r1.status).toBe("done");
    // Users of the generated stream only: the rebuilt user's lessons came later and count too.
    const fromStream = (await storedUnlocks(nats.nc, nats.js)).filter((u) => u.achievement_id === "three-lessons" && u.user_id !== "rebuilt") as (UnlockEvent & { backfill?: boolean })[];
    expect(fromStream.map((u) => [u.user_id, u.unlocked_at]).sort()).toEqual(want.map((w) => [w.user, w.at]).sort());
    expect(fromStream.every((u) => u.backfill === true && u.rule_version === version.version)).toBe(true);
    expect(r1.recorded).toBe(r1.implied);

    const r2 = await backfill(deps, { ...opts(), book: withRule, scope: "globex", version, tenant: "globex", unlocksPerSecond: 2000 });
    expect([r2.recorded, r2.already_recorded]).toEqual([0, r1.implied]);

    // A backfilled user's state knows the unlock: three more lessons live do not unlock it a second time.
    const user = want[0]!.user;
    const before = (await storedUnlocks(nats.nc, nats.js)).length;
    const more = [1, 2, 3, 4].map(() => ev("globex", user, "lesson.completed", { duration_seconds: 5 }));
    await publishInOrder(nats, more);
    await eventually(() => drained(nats.jsm, 4), 30_000, "drained");
    const after = await storedUnlocks(nats.nc, nats.js);
    expect(after.filter((u) => u.user_id === user && u.achievement_id === "three-lessons")).toHaveLength(1);
    expect(after.length).toBeGreaterThanOrEqual(before);
  });

  it("resumes a backfill killed twice mid-way: every implied unlock recorded and published once, while live events flow", async () => {
    const put = await apiFetch(engine, "/v1/tenants/globex/rules/two-lessons", { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ type: "count", event: "lesson.completed", target: 2 }) });
    expect(put.status).toBe(201);
    const registry = new RuleRegistry(await new Kvm(nats.nc).open(Buckets.Rules));
    const withRule = await registry.book();
    // Counted from the unlocks stream's subjects (no consumer per poll): one subject per unlock.
    const recordsOf = async () => Object.keys((await nats.jsm.streams.info(Streams.Unlocks, { subjects_filter: "ach.unlocked.globex.*.two-lessons.>" })).state.subjects ?? {}).length;
    const run = () => {
      const child = spawn(process.execPath, [BIN, "backfill", "two-lessons", "--tenant", "globex", "--rate", "8", "--no-progress", "--json"], {
        env: { ...process.env, NATS_URL: nats.url, ACH_CONFIG: fixture("achd.test.yaml"), ACH_RULES: fixture("rules"), LOG_LEVEL: "warn" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (err += d.toString()));
      const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
      return { child, exited, out: () => out, err: () => err };
    };
    // The second kill waits for a checkpoint past the first three too (written every second): the last run resumes after it.
    const version = (await registry.versions()).find((v) => v.rule.id === "two-lessons")!;
    const checkpointed = async () => (await store.checkpoint(backfillKey("globex", version, "globex")))?.value.done ?? 0;
    for (const [atLeast, done] of [[3, 0], [8, 3]] as const) {
      const p = run();
      await eventually(async () => ((await recordsOf()) >= atLeast && (await checkpointed()) >= done ? true : undefined), 60_000, `${atLeast} records, checkpoint at ${done}`);
      p.child.kill("SIGKILL");
      await p.exited;
    }
    const last = run();
    // Live traffic while the last run records: a new user's five lessons unlock five-lessons.
    const live = [1, 2, 3, 4, 5].map(() => ev("globex", "live-during-backfill", "lesson.completed"));
    await publishInOrder(nats, live);
    await eventually(async () => ((await storedUnlocks(nats.nc, nats.js)).some((u) => u.user_id === "live-during-backfill" && u.achievement_id === "five-lessons") ? true : undefined), 30_000, "a live unlock");
    const stillRunning = last.child.exitCode === null;
    expect(await last.exited, last.err()).toBe(0);
    const report = JSON.parse(last.out()) as { recorded: number; resumed_at?: number; implied: number };
    expect(report.resumed_at).toBeGreaterThanOrEqual(3);
    expect(stillRunning, "the live unlock came while the backfill was still recording").toBe(true);

    // Exactly the unlocks a clean evaluation gives, each recorded once and published once, backdated and marked.
    const lessons = lessonsBy(events, "globex");
    const want = [...lessons].filter(([, l]) => l.length >= 2).map(([user, l]) => [user, l[1]!.occurred_at]);
    const published = (await storedUnlocks(nats.nc, nats.js)).filter((u) => u.achievement_id === "two-lessons") as (UnlockEvent & { backfill?: boolean })[];
    const fromStream = published.filter((u) => lessons.has(u.user_id));
    expect(new Set(published.map((u) => u.unlock_id)).size, "an unlock published twice").toBe(published.length);
    expect(fromStream.map((u) => [u.user_id, u.unlocked_at]).sort()).toEqual(want.sort());
    expect(fromStream.every((u) => u.backfill === true)).toBe(true);
    expect(await recordsOf()).toBe(published.length);
    expect(withVersion(withRule, "globex", (await registry.versions()).find((v) => v.rule.id === "two-lessons")!)).toBeDefined();
  }, 180_000);
});

/**
 * The semantics checker: the fixture streams go through the real pipeline
 * while every event is published one to three times in a shuffled order,
 * the worker process is killed with SIGKILL again and again, and
 * nats-server is restarted mid-stream. Afterwards the unlocks and progress
 * must equal an oracle that evaluates the same events in event-time order,
 * every malformed event must be in the DLQ, and a clean replay of the same
 * input into a fresh server must give byte-identical state.
 *
 * ACH_SEED reproduces a run; ACH_CHAOS_SCALE (default 1) makes it larger.
 */
import { Kvm } from "@nats-io/kv";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/mod.ts";
import { startEngine } from "../../src/engine.ts";
import { eventSubject, validateEvent, type EventInput } from "../../src/events/mod.ts";
import { Buckets, consumerName, ensureTopology, Streams } from "../../src/nats/mod.ts";
import type { UnlockEvent } from "../../src/pipeline/mod.ts";
import { loadRules, progressOf } from "../../src/rules/mod.ts";
import { simulate, unlockLine } from "../../src/sim/mod.ts";
import { decodeState, encodeState, type UserState } from "../../src/state/mod.ts";
import { createLogger } from "../../src/util/log.ts";
import { mix, type Delivery } from "../fixtures/streams/generators.ts";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { eventually, fixture } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { prng, storedUnlocks } from "../helpers/stream.ts";

const SEED = Number(process.env.ACH_SEED ?? Date.now() % 1_000_000);
const SCALE = Number(process.env.ACH_CHAOS_SCALE ?? 1);
const TENANT = "chaos";
const RULES = fixture("chaos/rules.yaml");
const CONFIG = fixture("chaos/achd.yaml");
const config = loadConfig({ ACH_CONFIG: CONFIG }, { rules: RULES });
const WINDOW = config.reorder.window;
const PARTITIONS = config.partitions;
const say = (...a: unknown[]) => process.env.ACH_CHAOS_VERBOSE && console.log(new Date().toISOString(), ...a);

/** The publication plan: chunks of deliveries; shuffles stay inside a chunk, server restarts fall between chunks. */
function plan(rnd: () => number) {
  const scenarios = mix(rnd, TENANT, SCALE);
  const events = scenarios.flatMap((s) => s.events);
  const delayable = new Set(scenarios.flatMap((s) => [...s.delayable]));
  const malformed = scenarios.flatMap((s) => s.malformed);
  const deliver = (e: EventInput): Delivery => ({ subject: eventSubject(e.tenant_id, e.user_id, e.event_type), body: JSON.stringify(e), msgId: e.event_id, eventId: e.event_id });
  // Event-time order, shuffled by less than the reorder window.
  const onTime = events
    .filter((e) => !delayable.has(e.event_id))
    .map((e) => ({ e, key: Date.parse(e.occurred_at) + rnd() * WINDOW * 0.5 }))
    .sort((a, b) => a.key - b.key)
    .map((x) => x.e);
  const stream: Delivery[] = [];
  for (const e of onTime) {
    const copies = 1 + Math.floor(rnd() * 3);
    for (let c = 0; c < copies; c++) stream.push(deliver(e));
  }
  // A duplicate storm: one event published fifty times.
  if (onTime.length) for (let i = 0; i < 50; i++) stream.push(deliver(onTime[Math.floor(rnd() * onTime.length)]!));
  for (const m of malformed) stream.splice(Math.floor(rnd() * stream.length), 0, m);
  // Delayed far beyond the window: their rules do not depend on order.
  for (const e of events.filter((x) => delayable.has(x.event_id))) stream.push(deliver(e));
  const chunks: Delivery[][] = [];
  const size = Math.ceil(stream.length / (22 * SCALE));
  for (let i = 0; i < stream.length; i += size) chunks.push(stream.slice(i, i + size));
  return { scenarios, events, malformed, chunks };
}

async function publish(nats: TestNats, d: Delivery): Promise<void> {
  const h = (await import("@nats-io/transport-node")).headers();
  if (d.msgId) h.set("Nats-Msg-Id", d.msgId);
  for (let attempt = 0; ; attempt++) {
    try {
      await nats.js.publish(d.subject, new TextEncoder().encode(d.body), { headers: h, timeout: 2000 });
      return;
    } catch (err) {
      // The server is restarting: publish again (the msg id makes that safe).
      if (attempt > 200) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function drained(nats: TestNats): Promise<true | undefined> {
  for (let k = 0; k < PARTITIONS; k++) {
    const i = await nats.jsm.consumers.info(Streams.Events, consumerName(k));
    if (i.num_pending > 0 || i.num_ack_pending > 0) return undefined;
  }
  return true;
}

async function states(nats: TestNats): Promise<Map<string, UserState>> {
  const kv = await new Kvm(nats.nc).open(Buckets.State);
  const out = new Map<string, UserState>();
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  for (const k of keys.sort()) {
    const e = await kv.get(k);
    if (e?.value.length) out.set(k, decodeState(e.value));
  }
  return out;
}

/** A state without its outbox (delivery bookkeeping, cleared lazily), as the bytes the store writes. */
function stateBytes(s: UserState): string {
  return new TextDecoder().decode(encodeState({ ...s, outbox: [] }));
}

/** Publishes every chunk into a fresh server with one in-process engine and no chaos; returns the final states. */
async function cleanReplay(chunks: Delivery[][]): Promise<Map<string, UserState>> {
  const nats = await startTestNats(PARTITIONS);
  try {
    const cfg = loadConfig({ ACH_CONFIG: CONFIG }, { nats: { url: nats.url }, rules: RULES, http: { enabled: false }, log: { level: "silent" } });
    await ensureTopology(nats.nc, nats.jsm, cfg);
    for (const chunk of chunks) for (const d of chunk) await publish(nats, d);
    const engine = await startEngine(cfg, createLogger("silent"));
    try {
      await eventually(() => drained(nats), 60_000, "clean replay drained");
    } finally {
      await engine.stop();
    }
    return await states(nats);
  } finally {
    await nats.cleanup();
  }
}

describe("semantics checker: duplicates, shuffles, kill -9 and a server restart", () => {
  let nats: TestNats | undefined;
  let child: ChildEngine | undefined;
  afterAll(async () => {
    await child?.kill("SIGKILL");
    await nats?.cleanup();
  });

  it(`matches the event-time oracle (seed ${SEED}, scale ${SCALE})`, { timeout: 600_000 }, async () => {
    console.log(`semantics checker seed ${SEED} scale ${SCALE} (ACH_SEED=${SEED} ACH_CHAOS_SCALE=${SCALE} reproduces it)`);
    const rnd = prng(SEED);
    const { scenarios, events, malformed, chunks } = plan(rnd);
    nats = await startTestNats(PARTITIONS);
    const cfg = loadConfig({ ACH_CONFIG: CONFIG }, { nats: { url: nats.url }, rules: RULES });
    await ensureTopology(nats.nc, nats.jsm, cfg);
    const env = { ACH_CONFIG: CONFIG, ACH_RULES: RULES, LOG_LEVEL: "info" };

    // One chunk per worker life: start a worker, publish a chunk while it works, kill it at a random moment.
    // The server restart falls between two chunks, so no shuffled group straddles it.
    let kills = 0;
    const restartAt = Math.floor(chunks.length / 2);
    for (const [i, chunk] of chunks.entries()) {
      if (i === restartAt) {
        say("restarting nats-server");
        await nats.restart();
        say("nats-server back");
      }
      child = startChild(nats.url, "worker", env);
      await child.waitFor('"msg":"workers started"', 60_000);
      say("chunk", i, "of", chunks.length);
      const published = (async () => {
        for (const d of chunk) await publish(nats!, d);
      })();
      await new Promise((r) => setTimeout(r, 30 + rnd() * 400));
      await child.kill("SIGKILL");
      kills++;
      await published;
    }
    expect(kills).toBeGreaterThanOrEqual(20);
    child = startChild(nats.url, "worker", env);
    await child.waitFor('"msg":"workers started"', 60_000);
    say("publishing done; final worker");
    await eventually(() => drained(nats!), 120_000, "all partitions drained");
    say("drained");
    await new Promise((r) => setTimeout(r, WINDOW + 500));
    await eventually(() => drained(nats!), 60_000, "held events released");
    await child.kill("SIGTERM");

    // The oracle: the valid events, once each, in event-time order, through the pure evaluator.
    const book = loadRules(RULES);
    const sorted = [...events].sort((a, b) => Date.parse(a.occurred_at) - Date.parse(b.occurred_at) || (a.event_id < b.event_id ? -1 : 1));
    const oracle = simulate(sorted, book, 1000, cfg.dedup.fingerprints);
    const stored = await storedUnlocks(nats.nc, nats.js);

    // 1. No unlock_id twice in the unlocks stream.
    const ids = stored.map((u) => u.unlock_id);
    expect(new Set(ids).size, "an unlock_id stored twice").toBe(ids.length);
    // 2. The same unlocks as the oracle; unlocked_at within the reorder window of the event-time answer.
    const byId = new Map<string, UnlockEvent>(stored.map((u) => [u.unlock_id, u]));
    const want = oracle.unlocks.map((u) => unlockLine(u));
    expect([...byId.keys()].sort()).toEqual(want.map((u) => String(u.unlock_id)).sort());
    for (const w of want) {
      const got = byId.get(String(w.unlock_id))!;
      expect(Math.abs(Date.parse(got.unlocked_at) - Date.parse(String(w.unlocked_at))), `unlocked_at of ${got.achievement_id} for ${got.user_id}`).toBeLessThanOrEqual(WINDOW);
    }
    // 3. What each scenario states on its own is among the unlocks.
    for (const s of scenarios) {
      for (const [user, keys] of Object.entries(s.expect)) {
        const have = new Set(stored.filter((u) => u.user_id === user).map((u) => (u.tier ? `${u.achievement_id}:${u.tier}` : u.achievement_id)));
        for (const k of keys) expect(have.has(k), `${s.name}: ${user} should have ${k}`).toBe(true);
      }
    }
    // 4. Per-user progress as the oracle's.
    const chaosStates = await states(nats);
    const now = Math.max(...events.map((e) => Date.parse(e.occurred_at)));
    const set = book.forTenant(TENANT).at(now);
    for (const [key, st] of oracle.states) {
      const got = chaosStates.get(key);
      expect(got, `state of ${key}`).toBeDefined();
      const fig = (s: UserState) => progressOf(s.eval, set, now).map((p) => [p.achievement_id, p.tier, p.current, p.target, p.best ?? null, p.step ?? null]);
      expect(fig(got!), `progress of ${key}`).toEqual(fig(st));
      expect(Object.keys(got!.eval.unlocked).sort(), `unlocks of ${key}`).toEqual(Object.keys(st.eval.unlocked).sort());
    }
    // 5. Every malformed event is in the DLQ with its reason.
    const dlq = await nats.js.consumers.get(Streams.Dlq);
    const letters = new Map<string, string>();
    const total = (await dlq.info()).num_pending;
    if (total > 0) {
      for await (const m of await dlq.fetch({ max_messages: total, expires: 5000 })) {
        letters.set(m.headers?.get("Ach-Msg-Id") ?? "", m.headers?.get("Ach-Reason") ?? "");
        if (letters.size >= total) break;
      }
    }
    for (const m of malformed) expect(letters.get(m.eventId!), `DLQ entry of ${m.eventId}`).toBe(m.malformed);
    expect(events.every((e) => validateEvent(e).ok)).toBe(true);

    // 6. Two clean replays of the same input into fresh servers give byte-identical state.
    const a = await cleanReplay(chunks);
    const b = await cleanReplay(chunks);
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [k, s] of a) expect(stateBytes(b.get(k)!), `clean replay state of ${k}`).toBe(stateBytes(s));
    // And the chaos run reached the same evaluator state as a clean one.
    for (const [k, s] of a) expect(JSON.stringify(chaosStates.get(k)?.eval.unlocked ? Object.keys(chaosStates.get(k)!.eval.unlocked).sort() : []), k).toBe(JSON.stringify(Object.keys(s.eval.unlocked).sort()));
    console.log(`checker: ${events.length} events, ${chunks.flat().length} deliveries, ${kills} kills, 1 server restart, ${stored.length} unlocks`);
  });
});

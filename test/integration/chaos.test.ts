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
import { validateEvent } from "../../src/events/mod.ts";
import { Buckets, ensureTopology, Streams } from "../../src/nats/mod.ts";
import type { UnlockEvent, UserState } from "../../src/core/mod.ts";
import { loadRules, progressOf } from "../../src/rules/mod.ts";
import { simulate, unlockLine } from "../../src/sim/mod.ts";
import { cleanReplay, CONFIG, drained, plan, publish, RULES, say, SCALE, SEED, stateBytes, states, TENANT, WINDOW, PARTITIONS } from "../helpers/chaos.ts";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { eventually } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { prng, storedUnlocks } from "../helpers/stream.ts";

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
    for (const m of malformed) expect(letters.get(m.msgId!), `DLQ entry of ${m.eventId}`).toBe(m.malformed);
    expect(events.every((e) => validateEvent(e).ok)).toBe(true);

    // The seen-ids archive was written (retries without a msg id must be stopped by the engine's own record).
    const seen = await new Kvm(nats.nc).open(Buckets.Seen);
    let archived = 0;
    for await (const _k of await seen.keys()) archived++;
    expect(archived, "archive chunks written").toBeGreaterThan(0);
    // 6. Two clean replays of the same input into fresh servers give byte-identical state.
    const a = await cleanReplay(chunks);
    const b = await cleanReplay(chunks);
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [k, s] of a) {
      const x = stateBytes(s);
      const y = stateBytes(b.get(k)!);
      let i = 0;
      while (i < x.length && x[i] === y[i]) i++;
      // On a difference, show where: the state is long.
      expect(y.slice(Math.max(0, i - 300), i + 300), `clean replay state of ${k} differs at byte ${i}`).toBe(x.slice(Math.max(0, i - 300), i + 300));
    }
    // And the chaos run reached the same evaluator state as a clean one.
    for (const [k, s] of a) expect(JSON.stringify(chaosStates.get(k)?.eval.unlocked ? Object.keys(chaosStates.get(k)!.eval.unlocked).sort() : []), k).toBe(JSON.stringify(Object.keys(s.eval.unlocked).sort()));
    console.log(`checker: ${events.length} events, ${chunks.flat().length} deliveries, ${kills} kills, 1 server restart, ${stored.length} unlocks`);
  });
});

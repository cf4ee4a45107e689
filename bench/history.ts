/**
 * The history section: a shadow run and a backfill over the loaded stream
 * (events/s), and the live engine's publish → unlock latency at 1,000
 * events/s alone and while a backfill runs beside it.
 */
import { Kvm } from "@nats-io/kv";
import type { Engine } from "../src/engine.ts";
import { backfill, HistoryStore, shadowRun } from "../src/history/mod.ts";
import { Buckets } from "../src/nats/mod.ts";
import { loadRules, RuleSchema, type RuleVersion } from "../src/rules/mod.ts";
import { measureLatency, startBenchEngine, type LatencyResult } from "./engine.ts";
import type { OnProgress, Stack } from "./stack.ts";
import type { EventInput } from "../src/events/mod.ts";

export type HistoryResult = {
  shadow: { events: number; seconds: number; perSecond: number; gainUsers: number; loseUsers: number; moveUsers: number };
  backfill: { events: number; seconds: number; perSecond: number; implied: number; recorded: number; unlocksPerSecond: number; eventsPerSecondCap: number };
  /** Publish → unlock at the same offered load: alone, then with a backfill running. */
  live: { alone: LatencyResult; duringBackfill: LatencyResult; backfillRunning: boolean };
};

/** The backfill's throttle in the latency comparison: what an operator would leave it at. */
const LIVE_BACKFILL = { unlocksPerSecond: 200, eventsPerSecond: 20_000 };

const version = (raw: unknown, v: number): RuleVersion => ({ rule: RuleSchema.parse({ ...(raw as object), version: v }), version: v, effectiveFrom: Number.NEGATIVE_INFINITY });

export async function measureHistory(stack: Stack, background: Iterator<EventInput>, seconds: number, threads: number | undefined, progress?: (step: string) => OnProgress | undefined): Promise<HistoryResult> {
  const c = stack.config;
  const book = loadRules(c.rules);
  const base = { book, maxBytes: c.events.maxBytes, partitions: c.partitions, recentIds: c.worker.recentIds, fingerprints: c.dedup.fingerprints, limits: c.limits, ...(threads ? { threads } : {}) };
  const kvm = new Kvm(stack.nc);
  const store = new HistoryStore(await kvm.open(Buckets.History));
  const deps = { js: stack.js, jsm: stack.jsm, records: await kvm.open(Buckets.Unlocks), state: await kvm.open(Buckets.State), store };

  // A candidate that makes `lessons` easier: every tier at a fifth of its target.
  const lessons = book.all().find((x) => x.version.rule.id === "lessons")!.version.rule as { tiers: { name: string; target: number }[] };
  const candidate = version({ ...lessons, tiers: lessons.tiers.map((t) => ({ ...t, target: Math.max(1, Math.round(t.target / 5)) })) }, 2);
  const s = await shadowRun(stack.js, stack.jsm, { ...base, scope: "*", version: candidate, from: "bench", onProgress: progress?.("history: shadow") });
  const shadow = { events: s.coverage.events, seconds: s.coverage.seconds, perSecond: s.coverage.events_per_second, gainUsers: s.totals.gain_users, loseUsers: s.totals.lose_users, moveUsers: s.totals.move_users };

  // A new rule over the whole history, recorded as fast as the records allow.
  const fast = await backfill(deps, { ...base, scope: "*", version: version({ id: "bench-backfill", type: "count", event: "lesson.completed", target: 20 }, 1), unlocksPerSecond: 100_000, onProgress: progress?.("history: backfill") });
  const bf = { events: fast.coverage.events, seconds: fast.coverage.seconds, perSecond: fast.coverage.events_per_second, implied: fast.implied, recorded: fast.recorded, unlocksPerSecond: 100_000, eventsPerSecondCap: 0 };

  const engine: Engine = await startBenchEngine(stack);
  try {
    const alone = await measureLatency(stack, background, 1000, seconds, "h0", Math.min(5, seconds / 2), progress?.("history: live alone"));
    // Another new rule, throttled, running beside the live load.
    const running = backfill(deps, { ...base, scope: "*", version: version({ id: "bench-backfill-live", type: "count", event: "app.opened", target: 15 }, 1), ...LIVE_BACKFILL });
    let done = false;
    void running.then(() => (done = true), () => (done = true));
    const duringBackfill = await measureLatency(stack, background, 1000, seconds, "h1", 0, progress?.("history: live beside a backfill"));
    const backfillRunning = !done;
    await running;
    return { shadow, backfill: bf, live: { alone, duringBackfill, backfillRunning } };
  } finally {
    await engine.stop();
  }
}

/**
 * The history section: a shadow run and a backfill over the loaded stream
 * (events/s), and the live engine's publish → unlock latency at 1,000
 * events/s alone and while a backfill runs beside it.
 */
import { UnlockRecords } from "../src/pipeline/mod.ts";
import { Kvm } from "@nats-io/kv";
import type { Engine } from "../src/engine.ts";
import { backfill, HistoryStore, shadowRun } from "../src/history/mod.ts";
import { Buckets, partitionsDrained } from "../src/nats/mod.ts";
import { evalOptionsOf } from "../src/replay/mod.ts";
import { loadRules, RuleSchema, type RuleVersion } from "../src/rules/mod.ts";
import { measureLatency, startBenchEngine, type LatencyResult } from "./engine.ts";
import { spawn } from "node:child_process";
import { RuleRegistry } from "../src/registry/mod.ts";
import { ACHD, BENCH_RULES, until, type OnProgress, type Stack } from "./stack.ts";
import type { EventInput } from "../src/events/mod.ts";

export type HistoryResult = {
  shadow: { events: number; seconds: number; perSecond: number; gainUsers: number; loseUsers: number; moveUsers: number };
  /** Bytes the events stream holds per stored event (the history horizon's cost). */
  bytesPerEvent: number;
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
  const base = { ...evalOptionsOf(c), book, threads };
  const kvm = new Kvm(stack.nc);
  const store = new HistoryStore(await kvm.open(Buckets.History));
  const deps = { js: stack.js, jsm: stack.jsm, records: new UnlockRecords(stack.js, stack.jsm), state: await kvm.open(Buckets.State), store };

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
    // The stream's backlog first (the engine has not seen it when this section runs alone): latency is measured on a caught-up engine.
    const drain = progress?.("history: the live engine catching up");
    await until(async () => {
      drain?.(engine.stats.received);
      return partitionsDrained(stack.jsm, c.partitions);
    }, 500);
    const alone = await measureLatency(stack, background, 1000, seconds, "h0", Math.min(5, seconds / 2), progress?.("history: live alone"));
    // Another new rule, published, then backfilled by `achd backfill` in a process of its own (as an operator
    // runs it), throttled, beside the live load.
    await new RuleRegistry(await kvm.open(Buckets.Rules)).put("*", { id: "bench-backfill-live", type: "count", event: "app.opened", target: 15 }, Date.now());
    const child = spawn(process.execPath, [ACHD, "backfill", "bench-backfill-live", "--rate", String(LIVE_BACKFILL.unlocksPerSecond), "--events-rate", String(LIVE_BACKFILL.eventsPerSecond), "--no-progress", "--json"], {
      env: { ...process.env, NATS_URL: stack.url, ACH_AUTH: "none", ACH_RULES: BENCH_RULES, ACH_PARTITIONS: String(c.partitions), LOG_LEVEL: "warn" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let done = false;
    void exited.then(() => (done = true));
    const duringBackfill = await measureLatency(stack, background, 1000, seconds, "h1", 0, progress?.("history: live beside a backfill"));
    const backfillRunning = !done;
    const code = await exited;
    if (code !== 0) throw new Error(`achd backfill exited ${code}`);
    return { shadow, bytesPerEvent: s.coverage.horizon.messages ? s.coverage.horizon.bytes / s.coverage.horizon.messages : 0, backfill: bf, live: { alone, duringBackfill, backfillRunning } };
  } finally {
    await engine.stop();
  }
}

/**
 * `achd bench` / `npm run bench`: the engine measured against the ceiling of
 * its own stack, in the same run. Prints a table, writes results.json and
 * summary.md to a results folder. Asserts nothing.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { loadRules, readRuleFiles } from "../src/rules/mod.ts";
import { evalOptionsOf, reconcile, replayStream } from "../src/replay/mod.ts";
import { measureHistory, type HistoryResult } from "./history.ts";
import { measureCeiling, type CeilingResult } from "./ceiling.ts";
import { measureSse, type SseResult } from "./sse.ts";
import { instrumentationCost, type InstrumentationCost } from "./metrics-cost.ts";
import { measureWebhooks, type WebhooksResult } from "./webhooks.ts";
import { measureLatency, measureMemory, measureThroughput, startBenchEngine, type LatencyResult, type MemoryResult, type ThroughputResult } from "./engine.ts";
import { measureEvaluator, type EvaluatorResult } from "./evaluator.ts";
import { countWorkload, COUNT_RULES, DEFAULT_COUNT_WORKLOAD, type CountWorkload } from "./counts.ts";
import { measurePaired, REALISTIC_RULES, type PairedResult } from "./paired.ts";
import { measureScaling, type ScalingResult } from "./scaling.ts";
import { BENCH_RULES, preload, startStack, type Phase } from "./stack.ts";
import { DEFAULT_WORKLOAD, workload, type Workload } from "./workload.ts";

export const SECTIONS = ["evaluator", "ceiling", "engine", "realistic", "counts", "scaling", "replay", "history", "latency", "metrics", "sse", "webhooks", "memory"] as const;
export type Section = (typeof SECTIONS)[number];

export type BenchOptions = {
  workload: Workload;
  /** Distinct users for the memory section. */
  memoryUsers: number;
  /** V8 old-space cap of the memory section's worker (`--max-old-space-size`), MB; 0: none. */
  memoryHeapMB: number;
  /** The memory section's worker.cacheMB. */
  memoryCacheMB: number;
  /** Offered loads (events/s) for the latency section; the knee (80% of the measured engine throughput) is added. */
  loads: number[];
  /** Seconds per offered load. */
  loadSeconds: number;
  /** Whether the latency section adds the knee (80% of the engine section's throughput) to `loads`. */
  knee: boolean;
  /**
   * The count stream (bench/counts.ts) of the counts and scaling sections,
   * and how many times the counts section runs it, each on a fresh stack
   * (the scaling section runs it once per process count).
   */
  counts: CountWorkload & { repeats: number };
  /** The sse section: open streams, unlocks sent to each, unlocks per second. */
  sse: { clients: number; unlocks: number; rate: number };
  /** The webhooks section: unlocks delivered to one webhook, unlocks per second. */
  webhooks: { unlocks: number; rate: number };
  partitions: number;
  /** The bench server's fsync policy (`nats.embedded.sync`; `always` needs nats-server 2.10+). */
  sync?: "default" | "always";
  /** Replay threads (undefined: replay's default for the machine). */
  replayThreads?: number;
  sections: readonly Section[];
  /** Where results go (a timestamped folder inside). */
  out: string;
};

export const DEFAULT_OPTIONS: BenchOptions = {
  workload: DEFAULT_WORKLOAD,
  memoryUsers: 1_000_000,
  memoryHeapMB: 160,
  memoryCacheMB: 32,
  loads: [1000, 5000],
  loadSeconds: 30,
  knee: true,
  counts: { ...DEFAULT_COUNT_WORKLOAD, repeats: 3 },
  sse: { clients: 1000, unlocks: 200, rate: 100 },
  webhooks: { unlocks: 20_000, rate: 1000 },
  partitions: 8,
  sections: SECTIONS,
  out: "bench-results",
};

/** Small enough for the test suite: every section runs, the figures mean nothing. */
export const SMOKE_OPTIONS: BenchOptions = {
  workload: { ...DEFAULT_WORKLOAD, events: 2000, users: 400 },
  memoryUsers: 1000,
  memoryHeapMB: 160,
  memoryCacheMB: 32,
  loads: [200],
  loadSeconds: 1,
  knee: true,
  counts: { ...DEFAULT_COUNT_WORKLOAD, events: 2000, users: 400, repeats: 1 },
  sse: { clients: 20, unlocks: 20, rate: 50 },
  webhooks: { unlocks: 200, rate: 200 },
  partitions: 2,
  // Two threads, so the suite exercises the thread pool even where the default is one.
  replayThreads: 2,
  sections: SECTIONS,
  out: "bench-results",
};

/**
 * The headline figures in a few minutes (`achd bench --quick`): the
 * ceiling, the engine and the count stream once each on smaller streams,
 * and latency at 1,000 events/s for 10 s.
 */
export const QUICK_OPTIONS: BenchOptions = {
  ...DEFAULT_OPTIONS,
  workload: { ...DEFAULT_WORKLOAD, events: 100_000, users: 20_000 },
  loads: [1000],
  loadSeconds: 10,
  knee: false,
  counts: { ...DEFAULT_COUNT_WORKLOAD, events: 100_000, users: 10_000, repeats: 1 },
  sections: ["ceiling", "engine", "counts", "latency"],
};

export type BenchResults = {
  startedAt: string;
  machine: { cpus: number; cpu: string; memoryGb: number; node: string; natsServer?: string };
  options: BenchOptions;
  /** Rules in the bench rule set. */
  rules: number;
  evaluator?: EvaluatorResult[];
  /** Publishing the workload: JetStream publishes with acks (2000 in flight), the stack's write rate. */
  publish?: { count: number; perSecond: number };
  ceiling?: CeilingResult[];
  engine?: ThroughputResult & { ratioToCeiling?: number; ratioToBatchedCeiling?: number };
  /** The engine section's stream with the realistic rule set (about one unlock per hundred events), on a stack of its own. */
  realistic?: PairedResult;
  /** The count stream, bare consumer and engine, once per repeat on a fresh stack; the means over the repeats. */
  counts?: { workload: CountWorkload; runs: PairedResult[]; mean: { bare: number; engine: number; ratio: number } };
  /** The count stream through one and two worker processes. */
  scaling?: ScalingResult;
  replay?: { count: number; seconds: number; perSecond: number; unlocks: number; threads: number; ratioToEngine?: number; sameUnlocksAsEngine?: boolean };
  latency?: LatencyResult[];
  history?: HistoryResult;
  /** The engine's throughput without metrics and with them (scraped every second), runs alternating on fresh stacks. */
  metrics?: { runs: { enabled: boolean; perSecond: number }[]; off: number; on: number; cost: number; instrumentation: InstrumentationCost };
  sse?: SseResult;
  webhooks?: WebhooksResult;
  memory?: MemoryResult;
  /** Sections that failed, with the reason. */
  errors?: Partial<Record<Section, string>>;
  /** Where results.json and summary.md were written. */
  dir?: string;
};

type Say = (line: string) => void;

/**
 * Runs the chosen sections; `say` gets what each step is and the final
 * table, `phase` (when given) is called as each measured step starts and
 * is told its progress.
 */
export async function runBench(opts: BenchOptions, say: Say = (l) => console.log(l), phase?: Phase): Promise<BenchResults> {
  const res: BenchResults = {
    startedAt: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model ?? "?", memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version },
    options: opts,
    rules: readRuleFiles(BENCH_RULES).length,
  };
  const on = (s: Section) => opts.sections.includes(s);
  const dir = join(opts.out, res.startedAt.replace(/[:.]/g, "-"));
  mkdirSync(dir, { recursive: true });
  res.dir = dir;
  const save = () => {
    writeFileSync(join(dir, "results.json"), JSON.stringify(res, null, 2) + "\n");
    writeFileSync(join(dir, "summary.md"), summary(res));
  };
  // A section that fails is reported and the others still run; results are saved after each.
  const attempt = async (section: Section, fn: () => Promise<void> | void) => {
    try {
      await fn();
    } catch (err) {
      (res.errors ??= {})[section] = (err as Error).message;
      say(`${section}: failed: ${(err as Error).message}`);
    } finally {
      save();
    }
  };
  const w = opts.workload;
  say(`workload: ${w.events} events, ${w.users} users, ${w.tenants} tenants, Zipf s=${w.zipf}, sessions of ~${w.sessionMean} events (${w.concurrentSessions} open at once), ${w.days} days, seed ${w.seed}; rules: ${BENCH_RULES}; ${opts.partitions} partitions`);

  if (on("evaluator")) {
    say("evaluator: the pure evaluator, in-process, per rule type …");
    await attempt("evaluator", () => void (res.evaluator = measureEvaluator(w, BENCH_RULES, phase?.("evaluator", "events"))));
  }

  if (on("ceiling") || on("engine") || on("replay") || on("history") || on("latency")) {
    const stack = await startStack(opts.partitions, opts.sync);
    res.machine.natsServer = stack.nc.info?.version;
    try {
      // The latency section brings its own traffic: a backlog would only be in its way.
      let loaded = { count: 0, perSecond: 0 };
      if (on("ceiling") || on("engine") || on("replay") || on("history")) {
        say(`loading ${w.events} events into the stream …`);
        loaded = await preload(stack.js, workload(w), 2000, phase?.("loading", "events", w.events));
        res.publish = loaded;
        say(`  published at ${Math.round(loaded.perSecond)} events/s`);
      }
      if (on("ceiling")) {
        res.ceiling = [];
        for (const mode of ["ack-each", "ack-batched"] as const) {
          say(`ceiling (${mode}): bare pull consumers, parse + ack …`);
          await attempt("ceiling", async () => void res.ceiling!.push(await measureCeiling(stack, mode, loaded.count, phase?.(`ceiling (${mode})`, "events"))));
        }
      }
      if (on("engine")) await attempt("engine", async () => {
        say("engine: every event validated, deduplicated, evaluated, stored, unlocks published create-only, acked …");
        const t = await measureThroughput(stack, loaded.count, phase?.("engine", "events"));
        const each = res.ceiling?.find((c) => c.mode === "ack-each");
        const batched = res.ceiling?.find((c) => c.mode === "ack-batched");
        res.engine = { ...t, ...(each ? { ratioToCeiling: t.perSecond / each.perSecond } : {}), ...(batched ? { ratioToBatchedCeiling: t.perSecond / batched.perSecond } : {}) };
      });
      if (on("replay")) await attempt("replay", async () => {
        say("replay: the stored stream re-evaluated in memory …");
        const t0 = performance.now();
        const r = await replayStream(stack.js, stack.jsm, { ...evalOptionsOf(stack.config), book: loadRules(stack.config.rules), threads: opts.replayThreads, onProgress: phase?.("replay", "events") });
        const seconds = (performance.now() - t0) / 1000;
        const replay: NonNullable<BenchResults["replay"]> = { count: r.events, seconds, perSecond: r.events / seconds, unlocks: r.unlocks.length, threads: r.threads };
        if (res.engine) {
          replay.ratioToEngine = replay.perSecond / res.engine.perSecond;
          // The workers and replay must agree on what the stream unlocks (guarantee 3).
          const diff = await reconcile(stack.js, stack.jsm, r.unlocks);
          replay.sameUnlocksAsEngine = diff.notRecorded.length === 0 && diff.recordedOnly.length === 0;
        }
        res.replay = replay;
      });
      if (on("history")) await attempt("history", async () => {
        say(`history: a shadow run and a backfill over the stream; live latency at 1,000 events/s alone and beside a throttled backfill, ${opts.loadSeconds} s each …`);
        const background = workload({ ...w, seed: w.seed + 2, events: Number.MAX_SAFE_INTEGER / 2 });
        res.history = await measureHistory(stack, background, opts.loadSeconds, opts.replayThreads, (step) => phase?.(step, "events"));
      });
      if (on("latency")) await attempt("latency", async () => {
        const engine = await startBenchEngine(stack);
        try {
          const loads = [...opts.loads];
          if (res.engine && opts.knee) loads.push(Math.round(res.engine.perSecond * 0.8));
          res.latency = [];
          const background = workload({ ...w, seed: w.seed + 1, events: Number.MAX_SAFE_INTEGER / 2 });
          for (const [i, rate] of loads.entries()) {
            say(`latency at ${rate} events/s for ${opts.loadSeconds} s after a warm-up …`);
            // Five seconds of the same load first (less for short smoke loads): the new engine's cache is cold.
            res.latency.push(await measureLatency(stack, background, rate, opts.loadSeconds, String(i), Math.min(5, opts.loadSeconds / 2), phase?.(`latency at ${rate} events/s`, "events")));
          }
        } finally {
          await engine.stop();
        }
      });
    } finally {
      await stack.close();
    }
  }

  const stackOpts = { partitions: opts.partitions, sync: opts.sync };
  if (on("realistic")) {
    say(`realistic: the same stream with ${REALISTIC_RULES} (about one unlock per hundred events), on a fresh stack: bare one-ack consumer, then the engine …`);
    await attempt("realistic", async () => {
      res.realistic = await measurePaired(REALISTIC_RULES, workload(w), w.events, stackOpts, "realistic", phase);
      res.machine.natsServer ??= res.realistic.server;
    });
  }

  const c = opts.counts;
  if (on("counts")) {
    say(`counts: ${c.events} events from ${c.users} users, uniform, ${COUNT_RULES}; bare one-ack consumer, then the engine, ${c.repeats} time${c.repeats === 1 ? "" : "s"} on fresh stacks …`);
    await attempt("counts", async () => {
      const runs: PairedResult[] = [];
      for (let i = 0; i < c.repeats; i++) runs.push(await measurePaired(COUNT_RULES, countWorkload(c), c.events, stackOpts, `counts ${i + 1}/${c.repeats}`, phase));
      const mean = (f: (r: PairedResult) => number) => runs.reduce((a, r) => a + f(r), 0) / runs.length;
      res.counts = { workload: { events: c.events, users: c.users, seed: c.seed }, runs, mean: { bare: mean((r) => r.bare), engine: mean((r) => r.engine.perSecond), ratio: mean((r) => r.ratio) } };
      res.machine.natsServer ??= runs[0]?.server;
    });
  }

  if (on("scaling")) {
    say(`scaling: ${c.events} events from ${c.users} users (the count stream) through 1, then 2 achd worker processes, fresh stacks …`);
    await attempt("scaling", async () => void (res.scaling = await measureScaling({ events: c.events, users: c.users, seed: c.seed }, [1, 2], stackOpts, phase)));
  }

  if (on("metrics")) {
    say("metrics: the engine's throughput with metrics off and on (scraped every second), alternating on fresh stacks …");
    await attempt("metrics", async () => {
      const runs: { enabled: boolean; perSecond: number }[] = [];
      for (const enabled of [false, true, false, true]) {
        const stack = await startStack(opts.partitions, opts.sync, { metrics: { enabled } });
        try {
          res.machine.natsServer ??= stack.nc.info?.version;
          const loaded = await preload(stack.js, workload(w), 2000, phase?.(`metrics ${enabled ? "on" : "off"}: loading`, "events", w.events));
          runs.push({ enabled, perSecond: (await measureThroughput(stack, loaded.count, phase?.(`metrics ${enabled ? "on" : "off"}`, "events"))).perSecond });
        } finally {
          await stack.close();
        }
      }
      const mean = (e: boolean) => runs.filter((r) => r.enabled === e).reduce((a, r) => a + r.perSecond, 0) / (runs.length / 2);
      res.metrics = { runs, off: mean(false), on: mean(true), cost: 1 - mean(true) / mean(false), instrumentation: await instrumentationCost() };
    });
  }

  if (on("sse")) {
    const o = opts.sse;
    say(`sse: ${o.clients} open streams on one API process, ${o.unlocks} unlocks at ${o.rate}/s to each …`);
    await attempt("sse", async () => {
      const stack = await startStack(opts.partitions, opts.sync);
      try {
        res.machine.natsServer ??= stack.nc.info?.version;
        res.sse = await measureSse(stack, o.clients, o.unlocks, o.rate, phase?.("sse", "streams and unlocks", o.clients + o.unlocks));
      } finally {
        await stack.close();
      }
    });
  }

  if (on("webhooks")) {
    const o = opts.webhooks;
    say(`webhooks: ${o.unlocks} unlocks at ${o.rate}/s delivered to one webhook on 127.0.0.1 …`);
    await attempt("webhooks", async () => {
      const stack = await startStack(opts.partitions, opts.sync);
      try {
        res.machine.natsServer ??= stack.nc.info?.version;
        res.webhooks = await measureWebhooks(stack, o.unlocks, o.rate, phase?.("webhooks", "unlocks", o.unlocks));
      } finally {
        await stack.close();
      }
    });
  }

  if (on("memory")) {
    say(`memory: ${opts.memoryUsers} distinct users through one worker process (worker.cacheMB ${opts.memoryCacheMB}${opts.memoryHeapMB ? `, --max-old-space-size=${opts.memoryHeapMB}` : ""}) …`);
    await attempt("memory", async () => {
      const stack = await startStack(opts.partitions, opts.sync);
      try {
        res.memory = await measureMemory(stack, opts.memoryUsers, opts.memoryHeapMB || undefined, opts.memoryCacheMB, phase);
      } finally {
        await stack.close();
      }
    });
  }

  save();
  const md = summary(res);
  say("");
  say(md);
  say(`results: ${join(dir, "results.json")}, ${join(dir, "summary.md")}`);
  return res;
}

const n = (x: number | undefined, digits = 0) => (x === undefined || Number.isNaN(x) ? "–" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }));

/** The markdown summary: one table per section, targets beside the figures. */
export function summary(r: BenchResults): string {
  const w = r.options.workload;
  const lines = [
    `# achd benchmark, ${r.startedAt}`,
    "",
    `Machine: ${r.machine.cpus} × ${r.machine.cpu}, ${r.machine.memoryGb} GiB, Node ${r.machine.node}, nats-server ${r.machine.natsServer ?? "–"} (fsync: ${r.options.sync === "always" ? "sync_interval always" : "default, background"}).`,
    `Workload: ${n(w.events)} events from ${n(w.users)} users (${w.tenants} tenants, Zipf s=${w.zipf}, sessions of ~${w.sessionMean}), ${w.days} days of event time, seed ${w.seed}; ${r.rules} rules (${BENCH_RULES}); ${r.options.partitions} partitions.`,
    "",
  ];
  if (r.ceiling || r.engine || r.replay) {
    lines.push("| Throughput | events/s | ratio | target |", "|---|---:|---:|---|");
    if (r.publish) lines.push(`| stack: JetStream publish with ack, 2,000 in flight (loading the workload) | ${n(r.publish.perSecond)} | | |`);
    for (const c of r.ceiling ?? []) lines.push(`| ceiling: bare consumer, ${c.mode === "ack-each" ? "one ack per message" : "one ack per 100 (AckAll)"} | ${n(c.perSecond)} | | |`);
    if (r.engine) {
      const e = r.engine;
      lines.push(`| engine (${n(e.unlocks)} unlocks; ${n(e.writesPerEvent, 2)} JetStream writes per event) | ${n(e.perSecond)} | ${n(e.ratioToCeiling, 2)}× ceiling | ≥ 1.0× |`);
      if (r.publish) {
        lines.push(`| engine's JetStream writes per second | ${n(e.perSecond * e.writesPerEvent)} | ${n((e.perSecond * e.writesPerEvent) / r.publish.perSecond, 2)}× publish rate | |`);
        // What any engine making these writes could reach on this stack if writing were all it did.
        const bound = r.publish.perSecond / e.writesPerEvent;
        lines.push(`| write bound: publish rate ÷ ${n(e.writesPerEvent, 2)} writes per event (the engine reaches the same share of it as above) | ${n(bound)} | | |`);
      }
    }
    if (r.replay) lines.push(`| replay, in memory, ${r.replay.threads} thread${r.replay.threads === 1 ? "" : "s"} (${n(r.replay.unlocks)} unlocks${r.replay.sameUnlocksAsEngine === undefined ? "" : r.replay.sameUnlocksAsEngine ? ", the same ones the engine recorded" : ", NOT the ones the engine recorded"}) | ${n(r.replay.perSecond)} | ${n(r.replay.ratioToEngine, 2)}× engine | ≥ 3× |`);
    lines.push("");
  }
  if (r.realistic || r.counts) {
    lines.push("| Engine by stream and rule set (each on a stack of its own, bare consumer and engine in the same run) | publish, events/s | bare one-ack, events/s | engine, events/s | engine / bare | unlocks per event | writes per event |", "|---|---:|---:|---:|---:|---:|---:|");
    const row = (what: string, x: { publish?: number; bare?: number; engine: ThroughputResult; ratio?: number }) =>
      lines.push(`| ${what} | ${n(x.publish)} | ${n(x.bare)} | ${n(x.engine.perSecond)} | ${n(x.ratio, 2)}× | ${n(x.engine.unlocks / x.engine.count, 4)} | ${n(x.engine.writesPerEvent, 2)} |`);
    const each = r.ceiling?.find((c) => c.mode === "ack-each");
    if (r.engine) row(`bench stream, ${r.rules} bench rules (the engine section)`, { publish: r.publish?.perSecond, bare: each?.perSecond, engine: r.engine, ratio: r.engine.ratioToCeiling });
    const paired = (what: string, p: PairedResult) => row(what, { publish: p.publishPerSecond, bare: p.bare, engine: p.engine, ratio: p.ratio });
    if (r.realistic) paired(`bench stream, realistic rules (${r.realistic.rules}; ${n(r.realistic.engine.unlocks)} unlocks)`, r.realistic);
    if (r.counts) {
      const c = r.counts;
      for (const [i, run] of c.runs.entries()) paired(`count stream (${n(c.workload.events)} events, ${n(c.workload.users)} users, uniform; ${COUNT_RULES}), run ${i + 1} (${n(run.engine.unlocks)} unlocks)`, run);
      if (c.runs.length > 1) lines.push(`| count stream, mean of ${c.runs.length} runs | | ${n(c.mean.bare)} | ${n(c.mean.engine)} | ${n(c.mean.ratio, 2)}× | | |`);
    }
    lines.push("");
  }
  if (r.scaling) {
    const x = r.scaling;
    lines.push(
      `| Scaling: count stream (${n(x.workload.events)} events, ${n(x.workload.users)} users) through \`achd worker\` processes (compiled; lease TTL ${n(x.leaseTtlMs / 1000)} s, about when two settle on the planned split) | events/s, start → drained | events/s once the partitions are held as planned (backlog then, at s) | worker CPU s | nats-server CPU s | bench CPU s | CPU busy, cores (of ${r.machine.cpus}) | unlocks |`,
      "|---|---:|---:|---|---:|---:|---:|---:|",
    );
    for (const run of x.runs) {
      const busy = (run.workers.reduce((a, w) => a + w.cpuSeconds, 0) + run.serverCpuSeconds + run.benchCpuSeconds) / run.seconds;
      const split = run.split ? `${n(run.split.perSecond)} (${n(run.split.backlog)}, ${n(run.split.afterSeconds, 1)})` : "– (drained first)";
      const warned = run.workers.reduce((a, w) => a + w.warnings, 0);
      lines.push(`| ${run.processes} process${run.processes === 1 ? "" : "es"}${warned ? ` (${n(warned)} warnings logged)` : ""} | ${n(run.perSecond)} | ${split} | ${run.workers.map((w) => n(w.cpuSeconds, 1)).join(" + ")} | ${n(run.serverCpuSeconds, 1)} | ${n(run.benchCpuSeconds, 1)} | ${n(busy, 2)} | ${n(run.unlocks)} |`);
    }
    if (x.speedUp !== undefined) lines.push(`| speed-up, 2 processes over 1 | ${n(x.speedUp, 2)}× | ${x.splitSpeedUp === undefined ? "–" : `${n(x.splitSpeedUp, 2)}×`} | | | | | |`);
    lines.push("");
  }
  if (r.latency) {
    lines.push("| Offered load (events/s) | achieved | no-reorder p50 / p99 / p99.9 ms (n) | sequence p50 / p99 / p99.9 ms (n) | target |", "|---:|---:|---|---|---|");
    for (const l of r.latency) {
      const f = (p: LatencyResult["direct"]) => `${n(p.p50, 1)} / ${n(p.p99, 1)} / ${n(p.p999, 1)} (${p.n})`;
      lines.push(`| ${n(l.offered)} | ${n(l.achieved)}${l.failed ? ` (${n(l.failed)} publishes timed out)` : ""} | ${f(l.direct)} | ${f(l.sequence)} | ${l.offered === 1000 ? "no-reorder p99 ≤ 20 ms" : ""} |`);
    }
    lines.push("");
  }
  if (r.history) {
    const h = r.history;
    const f = (p: LatencyResult["direct"]) => `${n(p.p50, 1)} / ${n(p.p99, 1)} / ${n(p.p999, 1)} (${p.n})`;
    lines.push("| History | figure |", "|---|---|");
    lines.push(`| shadow run (candidate beside the versions in force, one read): events/s | ${n(h.shadow.perSecond)} (${n(h.shadow.events)} events in ${n(h.shadow.seconds, 1)} s; ${n(h.shadow.gainUsers)} users gain, ${n(h.shadow.moveUsers)} move) |`);
    lines.push(`| events stream: bytes per stored event (a million events: ${n(h.bytesPerEvent, 0)} MB of history) | ${n(h.bytesPerEvent, 0)} |`);
    lines.push(`| backfill of a new rule, unthrottled: events/s (evaluation and recording) | ${n(h.backfill.perSecond)} (${n(h.backfill.recorded)} unlocks recorded of ${n(h.backfill.implied)} implied, in ${n(h.backfill.seconds, 1)} s) |`);
    lines.push(`| live no-reorder p50 / p99 / p99.9 ms at 1,000 events/s, alone | ${f(h.live.alone.direct)} |`);
    lines.push(`| the same beside a backfill (200 unlocks/s, 20,000 events/s)${h.live.backfillRunning ? "" : " — the backfill ended before the measurement did"} | ${f(h.live.duringBackfill.direct)} |`, "");
  }
  if (r.metrics) {
    const m = r.metrics;
    lines.push("| Metrics cost (the engine, fresh stack each run, off and on alternating) | events/s | runs |", "|---|---:|---|");
    lines.push(`| metrics off | ${n(m.off)} | ${m.runs.filter((x) => !x.enabled).map((x) => n(x.perSecond)).join(", ")} |`);
    lines.push(`| metrics on, /metrics scraped every second, stats snapshots published | ${n(m.on)} | ${m.runs.filter((x) => x.enabled).map((x) => n(x.perSecond)).join(", ")} |`);
    lines.push(`| cost (target < 5%) | ${n(m.cost * 100, 1)}% | |`);
    // The same, measured in-process: what each event and each scrape adds, against the engine's time per event.
    const i = m.instrumentation;
    const perEventNs = 1e9 / m.off;
    lines.push(`| hot path: per-tenant counts, evaluation timing and histogram, per event | ${n(i.nsPerEvent)} ns | ${n((i.nsPerEvent / perEventNs) * 100, 2)}% of the engine's ${n(perEventNs / 1000, 0)} µs per event |`);
    lines.push(`| one /metrics rendering (100 tenants, 8 partitions); one dashboard snapshot | ${n(i.msPerScrape, 2)} ms; ${n(i.msPerSnapshot, 2)} ms | ${n(((i.msPerScrape + i.msPerSnapshot) / 1000) * 100, 2)}% of a core at one of each per second |`, "");
  }
  if (r.sse) {
    const x = r.sse;
    lines.push(`| SSE fan-out: ${n(x.clients)} open streams, ${n(x.unlocks)} unlocks each | |`, "|---|---:|");
    lines.push(`| deliveries (of ${n(x.clients * x.unlocks)}) | ${n(x.deliveries)} |`);
    lines.push(`| latency, event published → unlock received, p50 / p99 / max ms | ${n(x.latency.p50, 1)} / ${n(x.latency.p99, 1)} / ${n(x.latency.max, 1)} |`);
    lines.push(`| API process RSS: before, with the streams open, per stream | ${n(x.rssMb.before)} MB, ${n(x.rssMb.open)} MB, ${n(x.rssMb.perStreamKb, 1)} KB |`, "");
  }
  if (r.webhooks) {
    const x = r.webhooks;
    lines.push(`| Webhooks: ${n(x.unlocks)} unlocks at ${n(x.rate)}/s to one webhook (receiver on 127.0.0.1, answers at once) | |`, "|---|---:|");
    lines.push(`| achieved publish rate, unlocks/s${x.failedPublishes ? ` (${n(x.failedPublishes)} publishes timed out)` : ""} | ${n(x.achievedRate)} |`);
    lines.push(`| deliveries (of ${n(x.unlocks)}); duplicates; bad signatures | ${n(x.deliveries)}; ${n(x.duplicates)}; ${n(x.signatureFailures)} |`);
    lines.push(`| delivered per second, first publish → last delivery | ${n(x.deliveredRate)} |`);
    lines.push(`| latency, event published → webhook received, p50 / p99 / p99.9 / max ms | ${n(x.latency.p50, 1)} / ${n(x.latency.p99, 1)} / ${n(x.latency.p999, 1)} / ${n(x.latency.max, 1)} |`, "");
  }
  if (r.memory) {
    const m = r.memory;
    lines.push(`| Memory: ${n(m.users)} distinct users; cache ≤ ${n(m.cacheUsers)} users and ${m.cacheMB} MB; ${m.heapMB ? `--max-old-space-size=${m.heapMB}` : "no heap cap"} | RSS MB |`, "|---:|---:|");
    const step = Math.max(1, Math.floor(m.samples.length / 8));
    for (const [i, s] of m.samples.entries()) if (i % step === 0 || i === m.samples.length - 1) lines.push(`| ${n(s.processed)} processed | ${n(s.rssMb)} |`);
    lines.push(`| peak (target ≤ 300) | ${n(m.peakMb)} |`, "");
  }
  if (r.evaluator) {
    lines.push("| Pure evaluator, rule set | rules | evaluations/s | unlocks |", "|---|---:|---:|---:|");
    for (const e of r.evaluator) lines.push(`| ${e.set} | ${e.rules} | ${n(e.perSecond)} | ${n(e.unlocks)} |`);
    lines.push("");
  }
  for (const [section, why] of Object.entries(r.errors ?? {})) lines.push(`**${section} failed:** ${why}`, "");
  return lines.join("\n") + "\n";
}

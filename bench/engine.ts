import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { startEngine, type Engine } from "../src/engine.ts";
import { UNLOCKED_PREFIX, type EventInput } from "../src/events/mod.ts";
import { createLogger } from "../src/util/log.ts";
import { partitionBacklog, partitionsDrained } from "../src/nats/mod.ts";
import { BENCH_RULES, preload, publishEvent, rssOf, until, type OnProgress, type Phase, type Stack } from "./stack.ts";

/** The compiled CLI, as production runs it (the container image runs `dist/`). */
const COMPILED = fileURLToPath(new URL("../dist/cmd/achd.js", import.meta.url));

let build: Promise<string> | undefined;

/**
 * Compiles the sources to `dist/` (about 5 s), so that the measured worker
 * is what production runs, not the sources through tsx's transpiler (which
 * costs tens of MB of its own). The benchmark itself always runs from the
 * sources of a checkout. Once per bench process: the sections that start
 * workers share the build. Resolves to the compiled CLI's path.
 */
export function compiled(): Promise<string> {
  build ??= compile();
  // A failed build is not kept: the next section tries again.
  build.catch(() => (build = undefined));
  return build;
}

async function compile(): Promise<string> {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const root = fileURLToPath(new URL("..", import.meta.url));
  const code = await new Promise<number | null>((resolve) => spawn(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: root, stdio: "inherit" }).once("exit", resolve));
  if (code !== 0) throw new Error(`compiling the worker for the memory run failed (tsc exit ${code})`);
  return COMPILED;
}

/** Sustained engine throughput over a pre-loaded stream. */
export type ThroughputResult = {
  count: number;
  seconds: number;
  perSecond: number;
  unlocks: number;
  applied: number;
  duplicates: number;
  unchanged: number;
  conflicts: number;
  /** JetStream writes the engine made per event: user states, plus one create-only publish per unlock. */
  writesPerEvent: number;
};

/** Starts the engine (workers only, every partition) in this process against the stack's server. */
export async function startBenchEngine(stack: Stack): Promise<Engine> {
  return startEngine(stack.config, createLogger(stack.config.log.level, "achd-bench"));
}

/**
 * Starts the engine on a stream already holding `expected` events and
 * times it until every partition has everything acknowledged: validated,
 * deduplicated, evaluated, state stored, unlocks published (create-only).
 */
export async function measureThroughput(stack: Stack, expected: number, onProgress?: OnProgress): Promise<ThroughputResult> {
  const engine = await startBenchEngine(stack);
  const t0 = performance.now();
  // Scraped as often as a dashboard would: the cost of metrics includes rendering them.
  const url = engine.metricsUrl;
  const scrape = url ? setInterval(() => void fetch(url).then((r) => r.text(), () => undefined), 1000) : undefined;
  try {
    await until(() => {
      onProgress?.(engine.stats.received, expected);
      return engine.stats.received >= expected;
    }, 50);
    const t1 = await until(() => partitionsDrained(stack.jsm, stack.config.partitions), 20);
    const s = engine.stats;
    const seconds = (t1 - t0) / 1000;
    return {
      count: expected,
      seconds,
      perSecond: expected / seconds,
      unlocks: s.unlocks,
      applied: s.applied,
      duplicates: s.duplicates,
      unchanged: s.unchanged,
      conflicts: s.conflicts,
      writesPerEvent: (s.stateWrites + s.unlockWrites) / expected,
    };
  } finally {
    clearInterval(scrape);
    await engine.stop();
  }
}

/** Latency of one offered load, publish → unlock event received, in milliseconds. */
export type LatencyResult = {
  offered: number;
  /** What was actually published (and stored) per second. */
  achieved: number;
  /** Publishes that failed (a server slower than the offered load answers late: a timeout). */
  failed: number;
  seconds: number;
  direct: Percentiles;
  sequence: Percentiles;
};
export type Percentiles = { n: number; p50: number; p99: number; p999: number; max: number };

export function percentiles(xs: number[]): Percentiles {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => (s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : Number.NaN);
  return { n: s.length, p50: at(0.5), p99: at(0.99), p999: at(0.999), max: s.length ? s[s.length - 1]! : Number.NaN };
}

const dec = new TextDecoder();

/**
 * Offers `rate` events/s for `seconds` to a running engine: the background
 * workload, with every 20th slot a probe that unlocks at once (`first-open`
 * for a new user: no reordering) and every 200th slot the last of three
 * onboarding steps of a new user (the `onboarded` sequence: it waits for
 * the reorder window). Latency is from the probe's publish to its unlock
 * event reaching a plain subscriber on `ach.unlocked.>`. The first
 * `warmup` seconds run the same load unmeasured: a freshly started engine
 * reads every returning user's state once before its cache holds it.
 */
export async function measureLatency(stack: Stack, background: Iterator<EventInput>, rate: number, seconds: number, tag: string, warmup = 0, onProgress?: OnProgress): Promise<LatencyResult> {
  const { nc, js } = stack;
  const sentAt = new Map<string, number>();
  const direct: number[] = [];
  const sequence: number[] = [];
  const sub = nc.subscribe(`${UNLOCKED_PREFIX}.>`, {
    callback: (_err, m) => {
      const now = performance.now();
      const u = JSON.parse(dec.decode(m.data)) as { user_id: string; achievement_id: string };
      const t = sentAt.get(u.user_id);
      if (t === undefined) return;
      if (u.achievement_id === "first-open" && u.user_id.startsWith("lat-d")) direct.push(now - t);
      if (u.achievement_id === "onboarded") sequence.push(now - t);
    },
  });
  await nc.flush();
  // Above what the server can store (e.g. with fsync on every write) publishes time out: counted, not thrown.
  let failed = 0;
  const publish = (e: EventInput) => publishEvent(js, e).catch(() => void failed++);
  const pending: Promise<unknown>[] = [];
  const tickMs = 10;
  const start = performance.now();
  // Warm-up: the same load, its probes not recorded.
  const measured = (t: number) => t - start >= warmup * 1000;
  const t0 = start;
  let slot = 0;
  const now = Date.now();
  while (performance.now() - t0 < (warmup + seconds) * 1000) {
    // Catch up to the offered rate every tick: slots due = rate × elapsed.
    const due = Math.floor((rate * (performance.now() - t0)) / 1000);
    while (slot < due) {
      slot++;
      const at = new Date(now + slot).toISOString();
      if (slot % 200 === 0) {
        const user = `lat-s${tag}-${slot}`;
        // The first two steps go out now; the probe is the last one.
        for (const [i, type] of ["account.created", "profile.completed"].entries()) pending.push(publish({ event_id: `${user}-${i}`, tenant_id: "t0", user_id: user, event_type: type, occurred_at: new Date(now + slot - 2 + i).toISOString() }));
        if (measured(performance.now())) sentAt.set(user, performance.now());
        pending.push(publish({ event_id: `${user}-2`, tenant_id: "t0", user_id: user, event_type: "project.created", occurred_at: at }));
      } else if (slot % 20 === 0) {
        const user = `lat-d${tag}-${slot}`;
        if (measured(performance.now())) sentAt.set(user, performance.now());
        pending.push(publish({ event_id: `${user}-0`, tenant_id: "t0", user_id: user, event_type: "app.opened", occurred_at: at }));
      } else {
        const e = background.next();
        if (!e.done) pending.push(publish(e.value));
      }
    }
    onProgress?.(slot, Math.round(rate * (warmup + seconds)));
    const next = t0 + (Math.floor((performance.now() - t0) / tickMs) + 1) * tickMs;
    await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
  }
  const elapsed = (performance.now() - t0) / 1000;
  // Time is up: what was offered is all there will be (a slot or so short of the planned count).
  onProgress?.(slot, slot);
  await Promise.all(pending);
  // Sequence probes wait for the reorder window; give every probe time to come through.
  const want = sentAt.size;
  await until(() => direct.length + sequence.length >= want, 50, 30_000).catch(() => undefined);
  await sub.drain();
  return { offered: rate, achieved: (slot - failed) / elapsed, failed, seconds: elapsed - warmup, direct: percentiles(direct), sequence: percentiles(sequence) };
}

/** Worker memory as distinct users grow. */
export type MemoryResult = { users: number; cacheUsers: number; cacheMB: number; heapMB?: number; samples: { processed: number; rssMb: number }[]; peakMb: number };

/**
 * Publishes one event for each of `users` distinct users, runs `achd
 * worker` as a child process on them (with V8's old space capped at
 * `heapMB`, as a production worker should run), and samples its resident
 * memory as the users go through: bounded by the state cache
 * (`worker.cacheMB`), not by how many users exist.
 */
export async function measureMemory(stack: Stack, users: number, heapMB?: number, cacheMB?: number, phase?: Phase): Promise<MemoryResult> {
  const t0 = Date.UTC(2026, 2, 1);
  function* oneEach(): Generator<EventInput> {
    for (let i = 0; i < users; i++) yield { event_id: `mem-${i}`, tenant_id: `t${i % 4}`, user_id: `m${i}`, event_type: i % 3 === 0 ? "lesson.completed" : "app.opened", occurred_at: new Date(t0 + i).toISOString(), payload: { course: "algebra", duration_seconds: 300, score: 70 } };
  }
  const achd = await compiled();
  await preload(stack.js, oneEach(), 2000, phase?.("memory (publishing)", "users", users));
  const onProgress = phase?.("memory", "users", users);
  const child = spawn(process.execPath, [...(heapMB ? [`--max-old-space-size=${heapMB}`] : []), achd, "worker"], {
    env: { ...process.env, NATS_URL: stack.url, ACH_RULES: BENCH_RULES, ACH_PARTITIONS: String(stack.config.partitions), ACH_WORKER_ID: "bench-memory", LOG_LEVEL: "warn", ...(cacheMB ? { ACH_CACHE_MB: String(cacheMB) } : {}) },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const samples: { processed: number; rssMb: number }[] = [];
  let peak = 0;
  try {
    const sample = async () => {
      const rss = (await rssOf(child.pid!)) / 2 ** 20;
      peak = Math.max(peak, rss);
      try {
        const pending = await partitionBacklog(stack.jsm);
        samples.push({ processed: users - pending, rssMb: Math.round(rss) });
        onProgress?.(users - pending, users);
        return pending === 0;
      } catch {
        // The server is busy with the worker's writes: sample again next time.
        return false;
      }
    };
    await until(sample, 2000);
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
  return { users, cacheUsers: stack.config.worker.cacheUsers, cacheMB: cacheMB ?? stack.config.worker.cacheMB, ...(heapMB ? { heapMB } : {}), samples, peakMb: Math.round(peak) };
}

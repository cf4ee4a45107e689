import { EngineMetrics, Stats, takeSnapshot } from "../src/metrics/mod.ts";

/** What metrics add, measured in-process where a whole engine run is too noisy to show it. */
export type InstrumentationCost = {
  /** What the hot path adds per event: per-tenant counts, two clock reads and a histogram observation. */
  nsPerEvent: number;
  /** One `/metrics` rendering (every metric of a process with 100 tenants and 8 partitions), CPU time. */
  msPerScrape: number;
  /** One stats snapshot for the dashboard, taken and serialised. */
  msPerSnapshot: number;
};

const TENANTS = Array.from({ length: 100 }, (_, i) => `tenant-${i}`);

function timed(n: number, fn: (i: number) => void): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  return performance.now() - t0;
}

/**
 * Runs what the workers do per event with metrics on (per-tenant counts,
 * the evaluation timing and its histogram) against what they did before
 * (one process counter per step), and times rendering `/metrics` and a
 * snapshot with 100 tenants, 8 owned partitions and 40 achievements.
 */
export async function instrumentationCost(events = 2_000_000): Promise<InstrumentationCost> {
  const stats = new Stats(100);
  const live = {
    owned: () => [0, 1, 2, 3, 4, 5, 6, 7],
    held: () => 0,
    cache: () => ({ hits: 0, misses: 0 }),
    consumers: async () => new Map([0, 1, 2, 3, 4, 5, 6, 7].map((k) => [k, { pending: 10, ackPending: 5 }] as const)),
    dlqDepth: async () => 3,
  };
  const metrics = new EngineMetrics(stats, live, { process: "bench" });
  for (const [i, t] of TENANTS.entries()) for (let a = 0; a < 40; a++) if (a % 10 === i % 10) stats.unlock(t, `achievement-${a}`);
  const before = { received: 0, applied: 0 };
  const run = (n: number) => {
    const base = timed(n, () => {
      before.received++;
      before.applied++;
    });
    const now = timed(n, (i) => {
      const tenant = TENANTS[i % TENANTS.length]!;
      stats.tenant(tenant).received++;
      const t0 = performance.now();
      stats.observe.evaluation((performance.now() - t0) / 1000, 1);
      stats.tenant(tenant).applied++;
    });
    return ((now - base) * 1e6) / n;
  };
  run(events / 10);
  const nsPerEvent = run(events);
  await metrics.text();
  const scrapes = 50;
  const t0 = performance.now();
  for (let i = 0; i < scrapes; i++) await metrics.text();
  const msPerScrape = (performance.now() - t0) / scrapes;
  const t1 = performance.now();
  for (let i = 0; i < scrapes; i++) JSON.stringify(await takeSnapshot("bench", stats, metrics.unlockLatency, { worker: true, api: true, partitions: live.owned() }));
  return { nsPerEvent, msPerScrape, msPerSnapshot: (performance.now() - t1) / scrapes };
}

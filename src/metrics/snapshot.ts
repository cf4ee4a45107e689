import type { NatsConnection } from "@nats-io/transport-node";
import type { Histogram } from "prom-client";
import type { Logger } from "../util/log.ts";
import type { Stats, TenantCounts } from "./stats.ts";

/** Where each process publishes its counters (core NATS, not stored): `ach.stats.<process>`. */
export const STATS_PREFIX = "ach.stats";

/** A cumulative histogram: counts of observations at or below each bound (the last bound is +Inf). */
export type Buckets = { le: number[]; counts: number[]; count: number; sum: number };

/** What one process counted since it started, as the dashboard sums it. */
export type StatsSnapshot = {
  v: 1;
  /** The process: its worker id, or `api-<host>-<pid>` for an API-only process. */
  id: string;
  /** When it was taken (ms since the epoch, the process's clock). */
  at: number;
  worker: boolean;
  api: boolean;
  partitions: number[];
  tenants: Record<string, TenantCounts>;
  /** Dead letters per tenant (every origin and reason). */
  rejected: Record<string, number>;
  /** Unlocks per tenant and achievement. */
  unlocks: [tenant: string, achievement: string, n: number][];
  latency: Buckets;
};

/** A histogram's buckets as plain numbers (prom-client's `get()`, which every version keeps). */
async function bucketsOf(h: Histogram): Promise<Buckets> {
  const { values } = await h.get();
  const out: Buckets = { le: [], counts: [], count: 0, sum: 0 };
  for (const v of values) {
    if (v.metricName?.endsWith("_bucket")) {
      const le = v.labels.le;
      out.le.push(le === "+Inf" || le === undefined ? Infinity : Number(le));
      out.counts.push(v.value);
    } else if (v.metricName?.endsWith("_count")) out.count = v.value;
    else if (v.metricName?.endsWith("_sum")) out.sum = v.value;
  }
  return out;
}

/** Takes this process's snapshot. */
export async function takeSnapshot(id: string, stats: Stats, latency: Histogram, roles: { worker: boolean; api: boolean; partitions: number[] }, now = Date.now()): Promise<StatsSnapshot> {
  const rejected: Record<string, number> = {};
  for (const e of stats.deadLetters.entries()) rejected[e.labels[0]!] = (rejected[e.labels[0]!] ?? 0) + e.value;
  return {
    v: 1,
    id,
    at: now,
    ...roles,
    tenants: Object.fromEntries(stats.tenants().map(([t, c]) => [t, { ...c }])),
    rejected,
    unlocks: stats.unlocksBy.entries().map((e) => [e.labels[0]!, e.labels[1]!, e.value]),
    latency: await bucketsOf(latency),
  };
}

/**
 * Publishes the process's snapshot every `intervalMs` until stopped. A
 * publish that fails (NATS away) is skipped: the next one carries the same
 * totals.
 */
export function publishSnapshots(nc: NatsConnection, id: string, intervalMs: number, take: () => Promise<StatsSnapshot>, log: Logger): () => void {
  const subject = `${STATS_PREFIX}.${id}`;
  let busy = false;
  const timer = setInterval(() => {
    if (busy || nc.isClosed()) return;
    busy = true;
    take()
      .then((s) => nc.publish(subject, JSON.stringify(s)))
      .catch((err: unknown) => log.debug({ err: String(err) }, "stats snapshot not published"))
      .finally(() => (busy = false));
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

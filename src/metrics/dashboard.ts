import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { UnlockEvent } from "../core/mod.ts";
import type { Logger } from "../util/log.ts";
import { STATS_PREFIX, type Buckets, type StatsSnapshot } from "./snapshot.ts";
import type { TenantCounts } from "./stats.ts";

/** The counters the dashboard charts as rates. */
const RATES = ["received", "applied", "unlocks", "rejected"] as const;
type Rate = (typeof RATES)[number];
type Rates = Record<Rate, number>;

/** How many of the newest unlocks the feed keeps. */
const RECENT = 50;
/** Seconds of per-second rates the feed keeps (the charts' width). */
const WINDOW_S = 600;
/** Processes remembered at most (their last totals stay in the sums after they stop sending). */
const MAX_PROCESSES = 1000;

/** The dashboard's view built from the processes' snapshots and the unlocks stream (partitions and the DLQ are added by the route). */
export type DashboardView = {
  now: string;
  /** The live processes only (snapshots within three intervals, at least 5 s); `stale` when one has missed two snapshots in a row. */
  processes: { id: string; worker: boolean; api: boolean; partitions: number[]; seen_ms_ago: number; stale: boolean }[];
  series: { t: number[] } & Record<Rate, number[]>;
  totals: { received: number; applied: number; duplicates: number; rejected: number; unlocks: number; late: number };
  latency: { count: number; p50: number | null; p90: number | null; p99: number | null };
  top_achievements: { tenant: string; achievement: string; unlocks: number }[];
  tenants: { tenant: string; received: number; applied: number; rejected: number; unlocks: number; events_per_s: number }[];
  recent_unlocks: RecentUnlock[];
};

/** What the dashboard shows of one unlock (its reward and trigger ids stay out of the once-a-second view). */
export type RecentUnlock = Pick<UnlockEvent, "unlock_id" | "tenant_id" | "user_id" | "achievement_id" | "tier" | "title" | "rule_id" | "rule_version" | "unlocked_at" | "processed_at">;

function recentOf(u: UnlockEvent): RecentUnlock {
  const { unlock_id, tenant_id, user_id, achievement_id, tier, title, rule_id, rule_version, unlocked_at, processed_at } = u;
  return { unlock_id, tenant_id, user_id, achievement_id, tier, ...(title === undefined ? {} : { title }), rule_id, rule_version, unlocked_at, processed_at };
}

/** Where the newest unlocks come from (the API process's reader of the unlocks stream, `notify/fanout.ts`). */
export type UnlockSource = { listen(fn: (u: { body: UnlockEvent }) => void): () => void };

type Known = { snap: StatsSnapshot; seen: number; rates: Rates; tenantRates: Record<string, number> };

function rateFields(s: StatsSnapshot): Rates {
  const out: Rates = { received: 0, applied: 0, unlocks: 0, rejected: 0 };
  for (const c of Object.values(s.tenants)) {
    out.received += c.received;
    out.applied += c.applied;
    out.unlocks += c.unlocks;
  }
  for (const n of Object.values(s.rejected)) out.rejected += n;
  return out;
}

/** The growth of a counter between two snapshots; a counter that went down belongs to a restarted process. */
const grown = (now: number, before: number) => (now >= before ? now - before : now);

/** The `q` quantile of a cumulative histogram, interpolated within its bucket as Prometheus' histogram_quantile does. */
function quantile(b: Buckets, q: number): number | null {
  if (b.count === 0) return null;
  const rank = q * b.count;
  for (let i = 0; i < b.le.length; i++) {
    if (b.counts[i]! < rank) continue;
    const upper = b.le[i]!;
    const lower = i === 0 ? 0 : b.le[i - 1]!;
    if (upper === Infinity) return lower;
    const below = i === 0 ? 0 : b.counts[i - 1]!;
    const inBucket = b.counts[i]! - below;
    return inBucket > 0 ? lower + ((upper - lower) * (rank - below)) / inBucket : upper;
  }
  return null;
}

/** Sums histograms with the same bounds (those that differ are left out). */
function merged(all: Buckets[]): Buckets {
  const first = all.find((b) => b.le.length > 0);
  if (!first) return { le: [], counts: [], count: 0, sum: 0 };
  const out: Buckets = { le: [...first.le], counts: first.le.map(() => 0), count: 0, sum: 0 };
  for (const b of all) {
    if (b.le.length !== out.le.length || b.le.some((x, i) => x !== out.le[i])) continue;
    b.counts.forEach((c, i) => (out.counts[i]! += c));
    out.count += b.count;
    out.sum += b.sum;
  }
  return out;
}

/**
 * What the dashboard shows of the whole deployment, kept by the API: each
 * process's latest snapshot (`ach.stats.*`), per-second rates over the last
 * ten minutes, and the newest unlocks from the process's reader of the
 * unlocks stream (which starts a few unlocks back, so the feed is full again
 * right after a restart of the API).
 */
export class DashboardFeed {
  readonly #known = new Map<string, Known>();
  readonly #series: { t: number[] } & Record<Rate, number[]> = { t: [], received: [], applied: [], unlocks: [], rejected: [] };
  readonly #recent: RecentUnlock[] = [];
  #sub: Subscription | undefined;
  #subFailed = false;
  #stopUnlocks: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly d: { nc: NatsConnection; unlocks: UnlockSource; intervalMs: number; log: Pick<Logger, "warn"> },
  ) {}

  async start(): Promise<void> {
    this.#sub = this.d.nc.subscribe(`${STATS_PREFIX}.*`, {
      callback: (err, msg) => {
        if (err) {
          // Said once: the subscription ends with its error, and the page's sums stop growing.
          if (!this.#subFailed) this.d.log.warn({ err }, "stats snapshots subscription failed; the dashboard's sums stop at what it had");
          this.#subFailed = true;
          return;
        }
        try {
          this.#onSnapshot(msg.json<StatsSnapshot>(), Date.now());
        } catch {
          // Not a snapshot: ignored (only the engine may publish here).
        }
      },
    });
    this.#timer = setInterval(() => this.#sample(Date.now()), 1000);
    this.#timer.unref();
    this.#stopUnlocks = this.d.unlocks.listen((u) => {
      this.#recent.unshift(recentOf(u.body));
      if (this.#recent.length > RECENT) this.#recent.length = RECENT;
    });
  }

  stop(): void {
    this.#sub?.unsubscribe();
    clearInterval(this.#timer);
    this.#stopUnlocks?.();
  }

  #onSnapshot(s: StatsSnapshot, now: number): void {
    if (s?.v !== 1 || typeof s.id !== "string") return;
    const before = this.#known.get(s.id);
    const rates: Rates = { received: 0, applied: 0, unlocks: 0, rejected: 0 };
    const tenantRates: Record<string, number> = {};
    if (before && s.at > before.snap.at) {
      const dt = (s.at - before.snap.at) / 1000;
      const [a, b] = [rateFields(s), rateFields(before.snap)];
      for (const k of RATES) rates[k] = grown(a[k], b[k]) / dt;
      for (const [t, c] of Object.entries(s.tenants)) tenantRates[t] = grown(c.received, before.snap.tenants[t]?.received ?? 0) / dt;
    }
    this.#known.set(s.id, { snap: s, seen: now, rates, tenantRates });
    if (this.#known.size > MAX_PROCESSES) {
      const oldest = [...this.#known].sort((x, y) => x[1].seen - y[1].seen)[0]!;
      this.#known.delete(oldest[0]);
    }
  }

  /** A process is live while its snapshots keep coming (three intervals, at least 5 s). */
  #live(now: number): Known[] {
    const within = Math.max(5000, 3 * this.d.intervalMs);
    return [...this.#known.values()].filter((k) => now - k.seen <= within);
  }

  #sample(now: number): void {
    const live = this.#live(now);
    const s = this.#series;
    s.t.push(Math.floor(now / 1000));
    for (const k of RATES) s[k].push(Number(live.reduce((n, p) => n + p.rates[k], 0).toFixed(2)));
    if (s.t.length > WINDOW_S) for (const arr of [s.t, ...RATES.map((k) => s[k])]) arr.splice(0, arr.length - WINDOW_S);
  }

  /** The view at `now`: totals over every process seen (each since it started), rates and the process list of the live ones. */
  view(now = Date.now()): DashboardView {
    const all = [...this.#known.values()];
    const live = new Set(this.#live(now));
    const tenants = new Map<string, TenantCounts & { rejected: number; events_per_s: number }>();
    const totals = { received: 0, applied: 0, duplicates: 0, rejected: 0, unlocks: 0, late: 0 };
    const achievements = new Map<string, { tenant: string; achievement: string; unlocks: number }>();
    for (const k of all) {
      for (const [t, c] of Object.entries(k.snap.tenants)) {
        const row = tenants.get(t) ?? { received: 0, applied: 0, duplicates: 0, fingerprinted: 0, windowDuplicates: 0, late: 0, unchanged: 0, unlocks: 0, rejected: 0, events_per_s: 0 };
        for (const f of Object.keys(c) as (keyof TenantCounts)[]) row[f] += c[f];
        if (live.has(k)) row.events_per_s += k.tenantRates[t] ?? 0;
        tenants.set(t, row);
        totals.received += c.received;
        totals.applied += c.applied;
        totals.duplicates += c.duplicates + c.fingerprinted + c.windowDuplicates;
        totals.unlocks += c.unlocks;
        totals.late += c.late;
      }
      for (const [t, n] of Object.entries(k.snap.rejected)) {
        totals.rejected += n;
        const row = tenants.get(t);
        if (row) row.rejected += n;
      }
      for (const [tenant, achievement, n] of k.snap.unlocks) {
        const key = `${tenant}\0${achievement}`;
        const a = achievements.get(key) ?? { tenant, achievement, unlocks: 0 };
        a.unlocks += n;
        achievements.set(key, a);
      }
    }
    const latency = merged(all.map((k) => k.snap.latency));
    const q = (p: number) => {
      const v = quantile(latency, p);
      return v === null ? null : Number(v.toFixed(4));
    };
    return {
      now: new Date(now).toISOString(),
      processes: [...live]
        .map((k) => ({ id: k.snap.id, worker: k.snap.worker, api: k.snap.api, partitions: k.snap.partitions, seen_ms_ago: now - k.seen, stale: now - k.seen > 2 * this.d.intervalMs }))
        .sort((a, b) => a.id.localeCompare(b.id)),
      series: { t: [...this.#series.t], ...(Object.fromEntries(RATES.map((k) => [k, [...this.#series[k]]])) as Record<Rate, number[]>) },
      totals,
      latency: { count: latency.count, p50: q(0.5), p90: q(0.9), p99: q(0.99) },
      top_achievements: [...achievements.values()].sort((a, b) => b.unlocks - a.unlocks || a.tenant.localeCompare(b.tenant)).slice(0, 10),
      tenants: [...tenants]
        .map(([tenant, r]) => ({ tenant, received: r.received, applied: r.applied, rejected: r.rejected, unlocks: r.unlocks, events_per_s: Number(r.events_per_s.toFixed(2)) }))
        .sort((a, b) => b.received - a.received || a.tenant.localeCompare(b.tenant))
        .slice(0, 100),
      recent_unlocks: [...this.#recent],
    };
  }
}

import type { CompiledRule } from "../compile.ts";
import type { StreakRule } from "../schema.ts";
import { periodIndex } from "../../util/time.ts";
import { lastN, TRIGGER_LIMIT, type Kind } from "./types.ts";

/**
 * streak state: the qualifying periods as sorted, disjoint, inclusive runs
 * of period indices (so years of daily activity stay a handful of numbers),
 * counts of periods that have events but not yet `min_per_period`, and for
 * recent qualifying periods the event that made them qualify and its time
 * (provenance and `unlocked_at`).
 */
export type StreakState = {
  k: "streak";
  /** The period unit the indices are in (a version may change it; then the state starts over). */
  u?: "day" | "week";
  runs: [number, number][];
  pend: Record<string, number>;
  qid: Record<string, string>;
  qt: Record<string, number>;
};

const KEEP_RUNS = 64;
const KEEP_PENDING = 8;
const KEEP_IDS = 32;

function rule(c: CompiledRule): StreakRule {
  return c.rule as StreakRule;
}

/** Inserts period `p` into sorted disjoint runs, merging neighbours. */
export function addPeriod(runs: readonly [number, number][], p: number): [number, number][] {
  const all = [...runs, [p, p] as [number, number]].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [s, e] of all) {
    const last = out[out.length - 1];
    if (last && s <= last[1] + 1) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

function contains(runs: readonly [number, number][], p: number): boolean {
  return runs.some(([s, e]) => s <= p && p <= e);
}

/** Streak figures: the current streak (the best one ending at the newest run), the best, and where the best ends. */
export type StreakStats = { current: number; best: number; bestEnd: number };

/**
 * Can runs `i..j` form one streak? Without grace or freezes only a single
 * run can. With grace, every gap is one missed period and two forgiven
 * periods are at least `grace.per` apart. With freezes, scanning from run
 * `i` with none held, each run earns one freeze per `earn_every` periods it
 * has (at most `max` held) and each gap of g missed periods uses g held.
 * Earning per run (not per streak) keeps the figures monotone: adding a
 * period never lowers what a stretch earns.
 */
function spans(runs: readonly [number, number][], i: number, j: number, r: Pick<StreakRule, "grace" | "freezes">): boolean {
  if (i === j) return true;
  if (r.grace) {
    let lastMiss = Number.NEGATIVE_INFINITY;
    for (let k = i + 1; k <= j; k++) {
      const miss = runs[k]![0] - 1;
      if (miss !== runs[k - 1]![1] + 1 || miss - lastMiss < r.grace.per) return false;
      lastMiss = miss;
    }
    return true;
  }
  if (r.freezes) {
    let held = 0;
    for (let k = i; k <= j; k++) {
      if (k > i) {
        const gap = runs[k]![0] - runs[k - 1]![1] - 1;
        if (gap > held) return false;
        held -= gap;
      }
      held = Math.min(r.freezes.max, held + Math.floor((runs[k]![1] - runs[k]![0] + 1) / r.freezes.earn_every));
    }
    return true;
  }
  return false;
}

/**
 * The streak figures of a set of qualifying periods. The best streak is the
 * longest stretch of runs that {@link spans} allows, counted in qualifying
 * periods (forgiven or frozen periods keep a streak alive but do not add to
 * it). Every stretch is considered, not only those a greedy scan from the
 * oldest period would find, so adding a period never shortens the best
 * streak: the order in which periods arrive cannot change what unlocks.
 * Runs are few (at most 64), so the quadratic scan is cheap.
 */
export function streakStats(runs: readonly [number, number][], r: Pick<StreakRule, "grace" | "freezes">): StreakStats {
  const n = runs.length;
  if (n === 0) return { current: 0, best: 0, bestEnd: 0 };
  let best = 0;
  let bestEnd = 0;
  let current = 0;
  for (let j = 0; j < n; j++) {
    let longest = 0;
    let sum = 0;
    for (let i = j; i >= 0; i--) {
      sum += runs[i]![1] - runs[i]![0] + 1;
      if (spans(runs, i, j, r)) longest = Math.max(longest, sum);
      // Without freezes a stretch that fails only gets worse when it starts earlier.
      else if (!r.freezes) break;
    }
    if (longest > best) {
      best = longest;
      bestEnd = runs[j]![1];
    }
    if (j === n - 1) current = longest;
  }
  return { current, best, bestEnd };
}

export const streak: Kind<StreakState> = {
  tags: ["streak"],
  apply(prev, e, c, ctx) {
    if (!c.where(e.get)) return undefined;
    const r = rule(c);
    const p = periodIndex(e.time, ctx.tz, r.period);
    if (prev && (prev.u ?? "day") !== r.period) prev = undefined;
    const runs = prev?.runs ?? [];
    if (contains(runs, p)) return undefined;
    const pend = { ...(prev?.pend ?? {}) };
    const qid = { ...(prev?.qid ?? {}) };
    const qt = { ...(prev?.qt ?? {}) };
    const n = (pend[p] ?? 0) + 1;
    let nextRuns = runs;
    if (n >= r.min_per_period) {
      delete pend[p];
      nextRuns = lastN(addPeriod(runs, p), KEEP_RUNS);
      qid[p] = e.id;
      qt[p] = e.time;
    } else {
      pend[p] = n;
    }
    const newest = Math.max(p, nextRuns.length ? nextRuns[nextRuns.length - 1]![1] : p);
    for (const k of Object.keys(pend)) if (Number(k) < newest - KEEP_PENDING) delete pend[k];
    const qkeys = Object.keys(qid).map(Number).sort((a, b) => a - b);
    for (const k of qkeys.slice(0, Math.max(0, qkeys.length - KEEP_IDS))) {
      delete qid[k];
      delete qt[k];
    }
    return { k: "streak", u: r.period, runs: nextRuns, pend, qid, qt };
  },
  met(s, target, c, now) {
    if (!s || (s.u ?? "day") !== rule(c).period) return undefined;
    const st = streakStats(s.runs, rule(c));
    if (st.best < target) return undefined;
    // The qualifying periods of the best streak up to its end; it was met when the latest of them qualified.
    const periods = Object.keys(s.qid)
      .map(Number)
      .filter((k) => k <= st.bestEnd)
      .sort((a, b) => a - b);
    const last = lastN(periods, Math.min(target, KEEP_IDS));
    const times = last.map((k) => s.qt?.[k]).filter((t): t is number => t !== undefined);
    return { at: times.length ? Math.max(...times) : now, triggers: lastN(last.map((k) => s.qid[k]!), TRIGGER_LIMIT) };
  },
  progress(s, c) {
    if (!s || (s.u ?? "day") !== rule(c).period) return { current: 0, best: 0 };
    const st = streakStats(s.runs, rule(c));
    return { current: st.current, best: st.best };
  },
};

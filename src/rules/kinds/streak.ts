import type { CompiledRule } from "../compile.ts";
import type { StreakRule } from "../schema.ts";
import { periodIndex } from "../../util/time.ts";
import { lastN, TRIGGER_LIMIT, type Kind } from "./types.ts";

/**
 * streak state: the qualifying periods as sorted, disjoint, inclusive runs
 * of period indices (so years of daily activity stay a handful of numbers),
 * counts of periods that have events but not yet `min_per_period`, and the
 * first qualifying event id of recent periods (provenance).
 */
export type StreakState = { k: "streak"; runs: [number, number][]; pend: Record<string, number>; qid: Record<string, string> };

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

/** Streak figures from the runs: the current streak (ending at the newest run) and the best. */
export type StreakStats = { current: number; best: number; bestEnd: number };

/**
 * Walks the runs oldest first. A gap of missed periods is bridged by grace
 * (one missed period, at most once every `grace.per` periods) or by held
 * freezes (one per missed period); bridged periods keep the streak alive but
 * do not add to its length. Freezes are earned every `earn_every` streak
 * periods, up to `max` held, and are lost when the streak breaks. A pure
 * function of the set of qualifying periods, so order of arrival never
 * changes it.
 */
export function streakStats(runs: readonly [number, number][], r: Pick<StreakRule, "grace" | "freezes">): StreakStats {
  let best = 0;
  let bestEnd = 0;
  let cur = 0;
  let held = 0;
  let lastGrace = Number.NEGATIVE_INFINITY;
  let prevEnd: number | undefined;
  for (const [s, e] of runs) {
    if (prevEnd !== undefined) {
      const gap = s - prevEnd - 1;
      if (r.grace && gap === 1 && s - 1 - lastGrace >= r.grace.per) {
        lastGrace = s - 1;
      } else if (r.freezes && gap <= held) {
        held -= gap;
      } else {
        cur = 0;
        held = 0;
      }
    }
    const before = cur;
    cur += e - s + 1;
    if (r.freezes) held = Math.min(r.freezes.max, held + Math.floor(cur / r.freezes.earn_every) - Math.floor(before / r.freezes.earn_every));
    if (cur > best) {
      best = cur;
      bestEnd = e;
    }
    prevEnd = e;
  }
  return { current: cur, best, bestEnd };
}

export const streak: Kind<StreakState> = {
  tags: ["streak"],
  apply(prev, e, c, ctx) {
    if (!c.where(e.get)) return undefined;
    const r = rule(c);
    const p = periodIndex(e.time, ctx.tz, r.period);
    const runs = prev?.runs ?? [];
    if (contains(runs, p)) return undefined;
    const pend = { ...(prev?.pend ?? {}) };
    const qid = { ...(prev?.qid ?? {}) };
    const n = (pend[p] ?? 0) + 1;
    let nextRuns = runs;
    if (n >= r.min_per_period) {
      delete pend[p];
      nextRuns = lastN(addPeriod(runs, p), KEEP_RUNS);
      qid[p] = e.id;
    } else {
      pend[p] = n;
    }
    const newest = Math.max(p, nextRuns.length ? nextRuns[nextRuns.length - 1]![1] : p);
    for (const k of Object.keys(pend)) if (Number(k) < newest - KEEP_PENDING) delete pend[k];
    const qkeys = Object.keys(qid).map(Number).sort((a, b) => a - b);
    for (const k of qkeys.slice(0, Math.max(0, qkeys.length - KEEP_IDS))) delete qid[k];
    return { k: "streak", runs: nextRuns, pend, qid };
  },
  met(s, target, c, now) {
    if (!s) return undefined;
    const st = streakStats(s.runs, rule(c));
    if (st.best < target) return undefined;
    const ids = Object.keys(s.qid)
      .map(Number)
      .filter((k) => k <= st.bestEnd)
      .sort((a, b) => a - b)
      .map((k) => s.qid[k]!);
    return { at: now, triggers: lastN(ids, Math.min(target, TRIGGER_LIMIT)) };
  },
  progress(s, c) {
    if (!s) return { current: 0, best: 0 };
    const st = streakStats(s.runs, rule(c));
    return { current: st.current, best: st.best };
  },
};

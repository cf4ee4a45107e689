import { periodIndex } from "../../util/time.ts";
import type { CompiledRule } from "../compile.ts";
import { lastN, maxTarget, TRIGGER_LIMIT, type Kind } from "./types.ts";

/**
 * count without a window: how many qualifying events, the latest ids, and
 * the latest event time among them. A level is met the moment `n` reaches
 * its target; its time is the latest among the events counted by then. In
 * event-time order that is exactly when the target was reached; out of
 * order it is never earlier than any event that earned the unlock.
 */
export type CountState = { k: "count"; n: number; ids: string[]; t: number };

export const count: Kind<CountState> = {
  tags: ["count"],
  apply(prev, e, c) {
    if (!c.where(e.get)) return undefined;
    const keep = Math.min(maxTarget(c), TRIGGER_LIMIT);
    return { k: "count", n: (prev?.n ?? 0) + 1, ids: lastN([...(prev?.ids ?? []), e.id], keep), t: Math.max(prev?.t ?? e.time, e.time) };
  },
  met(s, target) {
    if (!s || s.n < target) return undefined;
    return { at: s.t, triggers: lastN(s.ids, Math.min(target, TRIGGER_LIMIT)) };
  },
  progress(s) {
    return { current: s?.n ?? 0 };
  },
};

/** count in a sliding window: (time, id) of the qualifying events still inside the window, by time. */
export type SlidingState = { k: "count-sliding"; ev: [number, string][] };

function windowOf(c: CompiledRule): number {
  const w = c.rule.type === "count" ? c.rule.window : undefined;
  return w?.sliding ?? 0;
}

/** The first window of `width` ms holding `target` events: the index range [i, j]. */
function firstWindow(ev: [number, string][], target: number, width: number): [number, number] | undefined {
  let i = 0;
  for (let j = 0; j < ev.length; j++) {
    while (ev[j]![0] - ev[i]![0] > width) i++;
    if (j - i + 1 >= target) return [j - target + 1, j];
  }
  return undefined;
}

export const countSliding: Kind<SlidingState> = {
  tags: ["count-sliding"],
  apply(prev, e, c) {
    if (!c.where(e.get)) return undefined;
    const width = windowOf(c);
    const ev = [...(prev?.ev ?? []), [e.time, e.id] as [number, string]];
    ev.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    // Keep what the newest event's window (and the window before it, for late events) may still use.
    const newest = ev[ev.length - 1]![0];
    const kept = lastN(
      ev.filter(([t]) => t >= newest - 2 * width),
      2 * maxTarget(c),
    );
    // A very late event that is dropped at once changes nothing.
    if (!kept.some(([, id]) => id === e.id)) return undefined;
    return { k: "count-sliding", ev: kept };
  },
  met(s, target, c) {
    if (!s) return undefined;
    const w = firstWindow(s.ev, target, windowOf(c));
    if (!w) return undefined;
    const hit = s.ev.slice(w[0], w[1] + 1);
    return { at: hit[hit.length - 1]![0], triggers: lastN(hit.map((x) => x[1]), TRIGGER_LIMIT) };
  },
  progress(s, c) {
    if (!s || s.ev.length === 0) return { current: 0 };
    // Events in the window that ends at the newest event.
    const newest = s.ev[s.ev.length - 1]![0];
    return { current: s.ev.filter(([t]) => t >= newest - windowOf(c)).length };
  },
};

/** count per calendar period (in the event's time zone); the last few periods are kept. */
export type CalendarState = { k: "count-calendar"; u?: string; p: Record<string, { n: number; ids: string[]; t: number }> };

const KEEP_PERIODS = 3;

function unitOf(c: CompiledRule): "day" | "week" | "month" {
  const w = c.rule.type === "count" ? c.rule.window : undefined;
  return w?.calendar ?? "day";
}

export const countCalendar: Kind<CalendarState> = {
  tags: ["count-calendar"],
  apply(prev, e, c, ctx) {
    if (!c.where(e.get)) return undefined;
    const unit = unitOf(c);
    const idx = periodIndex(e.time, ctx.tz, unit);
    // Period numbers of another unit (the rule's window changed) mean nothing here.
    const p = { ...(prev && (prev.u ?? "day") === unit ? prev.p : {}) };
    const keys = Object.keys(p).map(Number);
    const newest = Math.max(idx, ...keys);
    if (idx <= newest - KEEP_PERIODS) return undefined; // too late for a period no longer kept
    const cur = p[idx] ?? { n: 0, ids: [], t: e.time };
    p[idx] = { n: cur.n + 1, ids: lastN([...cur.ids, e.id], Math.min(maxTarget(c), TRIGGER_LIMIT)), t: Math.max(cur.t, e.time) };
    for (const k of keys) if (k <= newest - KEEP_PERIODS) delete p[k];
    return { k: "count-calendar", u: unit, p };
  },
  met(s, target, c) {
    if (!s || (s.u ?? "day") !== unitOf(c)) return undefined;
    for (const k of Object.keys(s.p).sort((a, b) => Number(a) - Number(b))) {
      const b = s.p[k]!;
      if (b.n >= target) return { at: b.t, triggers: lastN(b.ids, Math.min(target, TRIGGER_LIMIT)) };
    }
    return undefined;
  },
  progress(s) {
    if (!s) return { current: 0 };
    const keys = Object.keys(s.p).map(Number);
    return { current: keys.length ? s.p[Math.max(...keys)]!.n : 0 };
  },
};

import type { CompiledRule } from "../compile.ts";
import type { ThresholdRule } from "../schema.ts";
import { lastN, maxTarget, TRIGGER_LIMIT, type Kind } from "./types.ts";

/**
 * Sums are kept as integers in millionths, so that adding the same amounts
 * in any order gives the same total (floating-point addition does not).
 */
export const SUM_SCALE = 1_000_000;

/** threshold: a running sum (millionths), a max, or a set of distinct values, with the ids behind it. */
export type ThresholdState =
  | { k: "sum"; v: number; ids: string[] }
  | { k: "max"; v: number; ids: string[] }
  | { k: "distinct"; vals: string[]; ids: string[] };

function rule(c: CompiledRule): ThresholdRule {
  return c.rule as ThresholdRule;
}

function numberAt(c: CompiledRule, get: (p: string) => unknown): number | undefined {
  const v = get(rule(c).field);
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function measure(s: ThresholdState | undefined): number {
  if (!s) return 0;
  if (s.k === "sum") return s.v / SUM_SCALE;
  if (s.k === "max") return s.v;
  return s.vals.length;
}

export const threshold: Kind<ThresholdState> = {
  tags: ["sum", "max", "distinct"],
  apply(prev, e, c) {
    if (!c.where(e.get)) return undefined;
    const agg = rule(c).aggregate;
    if (agg === "distinct") {
      const raw = e.get(rule(c).field);
      if (raw === undefined || raw === null || typeof raw === "object") return undefined;
      const key = JSON.stringify(raw).slice(0, 128);
      const vals = prev?.k === "distinct" ? prev.vals : [];
      if (vals.includes(key) || vals.length >= maxTarget(c)) return undefined;
      const ids = prev?.k === "distinct" ? prev.ids : [];
      return { k: "distinct", vals: [...vals, key].sort(), ids: lastN([...ids, e.id], TRIGGER_LIMIT) };
    }
    const x = numberAt(c, e.get);
    if (x === undefined) return undefined;
    if (agg === "sum") {
      const p = prev?.k === "sum" ? prev : { k: "sum" as const, v: 0, ids: [] };
      return { k: "sum", v: p.v + Math.round(x * SUM_SCALE), ids: lastN([...p.ids, e.id], TRIGGER_LIMIT) };
    }
    // value and max: the largest single value seen.
    if (prev?.k === "max" && x <= prev.v) return undefined;
    return { k: "max", v: x, ids: [e.id] };
  },
  met(s, target, _c, now) {
    if (measure(s) < target) return undefined;
    return { at: now, triggers: s!.ids };
  },
  progress(s) {
    return { current: measure(s) };
  },
};

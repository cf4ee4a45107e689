import type { CompiledRule } from "../compile.ts";
import type { ThresholdRule } from "../schema.ts";
import { lastN, maxTarget, TRIGGER_LIMIT, type Kind } from "./types.ts";

/**
 * Sums are kept as integers in millionths, so that adding the same amounts
 * in any order gives the same total (floating-point addition does not).
 */
export const SUM_SCALE = 1_000_000;

/**
 * Adds millionths exactly: a plain number while the total is a safe
 * integer (every total below about 9 × 10⁹), else its decimal digits, added
 * as BigInt. Amounts are at most 10¹⁵ (rules read larger numbers as
 * missing), so a total never becomes Infinity, which JSON would store as
 * null: the stored state and the one in memory stay the same.
 */
export function addMillionths(total: number | string, amount: number): number | string {
  if (typeof total === "number" && Number.isSafeInteger(total)) {
    const sum = total + amount;
    if (Number.isSafeInteger(amount) && Number.isSafeInteger(sum)) return sum;
  }
  const big = BigInt(total) + BigInt(amount);
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big.toString();
}

/** A stored sum in millionths; anything else (a state written before sums were bounded held `null`) counts as 0. */
function millionths(v: unknown): number | string {
  if (typeof v === "number" && Number.isSafeInteger(v)) return v;
  return typeof v === "string" && /^-?\d+$/.test(v) ? v : 0;
}

/**
 * threshold: a running sum (millionths), a max, or a set of distinct values,
 * with the ids behind it and `t`: the latest time among the events that
 * count (sum, distinct) or the time of the largest value (max).
 */
export type ThresholdState =
  | { k: "sum"; v: number | string; ids: string[]; t: number }
  | { k: "max"; v: number; ids: string[]; t: number }
  | { k: "distinct"; vals: string[]; ids: string[]; t: number };

function rule(c: CompiledRule): ThresholdRule {
  return c.rule as ThresholdRule;
}

function numberAt(c: CompiledRule, get: (p: string) => unknown): number | undefined {
  const v = get(rule(c).field);
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

function measure(s: ThresholdState | undefined): number {
  if (!s) return 0;
  if (s.k === "sum") return Number(millionths(s.v)) / SUM_SCALE;
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
      const t = prev?.k === "distinct" ? Math.max(prev.t, e.time) : e.time;
      return { k: "distinct", vals: [...vals, key].sort(), ids: lastN([...ids, e.id], TRIGGER_LIMIT), t };
    }
    const x = numberAt(c, e.get);
    if (x === undefined) return undefined;
    if (agg === "sum") {
      const p = prev?.k === "sum" ? prev : { k: "sum" as const, v: 0, ids: [], t: e.time };
      return { k: "sum", v: addMillionths(millionths(p.v), Math.round(x * SUM_SCALE)), ids: lastN([...p.ids, e.id], TRIGGER_LIMIT), t: Math.max(p.t, e.time) };
    }
    // value and max: the largest single value seen.
    if (prev?.k === "max" && x <= prev.v) return undefined;
    return { k: "max", v: x, ids: [e.id], t: e.time };
  },
  met(s, target) {
    if (!s || measure(s) < target) return undefined;
    return { at: s.t, triggers: s.ids };
  },
  progress(s) {
    return { current: measure(s) };
  },
};

import { compileCondition, type Predicate } from "./condition.ts";
import type { Rule } from "./schema.ts";

/** Field lookup into an event (`payload.x`, `attributes.plan`, `source`, …). */
export type Getter = (path: string) => unknown;

/** An event as the evaluator sees it: id, type, time, fields, and its time zone for this rule. */
export type EvalEvent = { id: string; type: string; time: number; get: Getter };

/** One rung of a rule's ladder: a tier (or the single, unnamed level) and its target. */
export type Level = { tier: string | null; target: number };

/** A rule ready to evaluate: its definition, version, compiled filters and ladder. */
export type CompiledRule = {
  rule: Rule;
  id: string;
  version: number;
  /** Event time from which this version applies (-Infinity: from the start). */
  effectiveFrom: number;
  /** Event types that change this rule's state. */
  types: string[];
  /** The rule's own `where` (count, threshold, streak). */
  where: Predicate;
  /** Per-step filters (sequence) or per-item filters (composite event items; `undefined` for achievement items). */
  parts: (Predicate | undefined)[];
  /** Availability window and segment: does this event count at all? */
  admits: (e: EvalEvent) => boolean;
  /** Is event time `t` inside the availability window (`starts_at` ≤ t < `ends_at`)? */
  inWindow: (t: number) => boolean;
  levels: Level[];
  /** Depends on the order of events (sequences): applied only after the reorder window. */
  ordered: boolean;
  /** Achievement keys this rule waits for (prerequisites and composite achievement items). */
  deps: string[];
};

const always: Predicate = () => true;

/** The ladder of a rule: its tiers, or one level. Sequences and composites have one level of 1. */
export function levelsOf(rule: Rule): Level[] {
  if (rule.type === "sequence" || rule.type === "composite") return [{ tier: null, target: 1 }];
  if (rule.tiers) return rule.tiers.map((t) => ({ tier: t.name, target: t.target }));
  return [{ tier: null, target: rule.target ?? 1 }];
}

/** The achievement key an item of a composite refers to, or undefined for an event item. */
export function itemAchievement(item: Extract<Rule, { type: "composite" }>["of"][number]): string | undefined {
  if (typeof item === "string") return item;
  return "achievement" in item ? item.achievement : undefined;
}

function segmentPredicate(segment: Rule["segment"]): Predicate {
  if (!segment) return always;
  const checks = Object.entries(segment).map(([attr, allowed]) => {
    const list = Array.isArray(allowed) ? allowed : [allowed];
    return (get: Getter) => list.includes(get(`attributes.${attr}`) as never);
  });
  return (get) => checks.every((c) => c(get));
}

/** Compiles one validated rule version. */
export function compileRule(rule: Rule, version: number, effectiveFrom = Number.NEGATIVE_INFINITY): CompiledRule {
  const inWindow = (t: number) => (rule.starts_at === undefined || t >= rule.starts_at) && (rule.ends_at === undefined || t < rule.ends_at);
  const segment = segmentPredicate(rule.segment);
  let types: string[] = [];
  let where: Predicate = always;
  let parts: (Predicate | undefined)[] = [];
  const deps = [...rule.prerequisites];
  switch (rule.type) {
    case "count":
    case "threshold":
    case "streak":
      types = rule.event;
      where = rule.where ? compileCondition(rule.where) : always;
      break;
    case "sequence":
      types = [...new Set(rule.steps.flatMap((s) => s.event))];
      parts = rule.steps.map((s) => (s.where ? compileCondition(s.where) : always));
      break;
    case "composite":
      for (const item of rule.of) {
        const ach = itemAchievement(item);
        if (ach) {
          deps.push(ach);
          parts.push(undefined);
        } else {
          const ev = item as { event: string[]; where?: Record<string, unknown> };
          types.push(...ev.event);
          parts.push(ev.where ? compileCondition(ev.where) : always);
        }
      }
      types = [...new Set(types)];
      break;
  }
  return {
    rule,
    id: rule.id,
    version,
    effectiveFrom,
    types,
    where,
    parts,
    admits: (e) => inWindow(e.time) && segment(e.get),
    inWindow,
    levels: levelsOf(rule),
    ordered: rule.type === "sequence",
    deps: [...new Set(deps)],
  };
}

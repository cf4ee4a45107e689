import { validateEvent, type ValidEvent } from "../src/events/mod.ts";
import { emptyEvalState, evaluate, readRuleFiles, RuleBook, type EvalState, type Rule } from "../src/rules/mod.ts";
import { BENCH_RULES, type OnProgress } from "./stack.ts";
import { workload, type Workload } from "./workload.ts";

/** Evaluations per second of the pure evaluator for one rule set. */
export type EvaluatorResult = { set: string; rules: number; events: number; perSecond: number; unlocks: number };

/** The bench rules of these types, plus every rule they reference (a composite needs its parts). */
function subset(all: readonly Rule[], types: readonly string[]): Rule[] {
  const want = new Set(all.filter((r) => types.includes(r.type)).map((r) => r.id));
  for (let grew = true; grew; ) {
    grew = false;
    for (const r of all) {
      if (!want.has(r.id)) continue;
      const refs = [...r.prerequisites, ...(r.type === "composite" ? r.of.map((i) => (typeof i === "string" ? i : "achievement" in i ? i.achievement : "")) : [])];
      for (const ref of refs) {
        const id = ref.split(":")[0]!;
        if (id && !want.has(id)) {
          want.add(id);
          grew = true;
        }
      }
    }
  }
  return all.filter((r) => want.has(r.id));
}

/**
 * The pure evaluator alone (state + event + rules → new state + unlocks),
 * in-process, per rule type and for the whole bench set: the workload's
 * events are validated first (not timed), then each is evaluated against
 * its user's state, in stream order.
 */
export function measureEvaluator(w: Workload, rulesPath = BENCH_RULES, onProgress?: OnProgress): EvaluatorResult[] {
  const all = readRuleFiles(rulesPath).map((f) => f.rule);
  const sets: [string, Rule[]][] = [
    ...(["count", "threshold", "streak", "sequence"] as const).map((t) => [t, subset(all, [t])] as [string, Rule[]]),
    ["composite (and the rules it references)", subset(all, ["composite"])],
    [`all ${all.length} bench rules`, all],
  ];
  // Progress counts events handled: the validation pass, then two passes per set.
  const total = w.events * (1 + 2 * sets.length);
  let handled = 0;
  const events: ValidEvent[] = [];
  for (const e of workload(w)) {
    const v = validateEvent(e);
    if (v.ok) events.push(v.value);
  }
  onProgress?.((handled += w.events), total);
  return sets.map(([set, rules]) => {
    const book = RuleBook.fromRules(rules, new Map());
    const states = new Map<string, EvalState>();
    let unlocks = 0;
    // One untimed pass warms the JIT; the timed pass starts from empty states again.
    for (const pass of [0, 1]) {
      states.clear();
      unlocks = 0;
      const t0 = performance.now();
      for (const ev of events) {
        const key = `${ev.event.tenant_id}.${ev.event.user_id}`;
        const r = evaluate(states.get(key) ?? emptyEvalState(), ev, book.forTenant(ev.event.tenant_id));
        states.set(key, r.state);
        unlocks += r.unlocks.length;
      }
      const seconds = (performance.now() - t0) / 1000;
      // After the timed loop, not in it.
      onProgress?.((handled += w.events), total);
      if (pass === 1) return { set, rules: rules.length, events: events.length, perSecond: events.length / seconds, unlocks };
    }
    throw new Error("unreachable");
  });
}

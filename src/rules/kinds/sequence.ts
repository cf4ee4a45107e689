import type { CompiledRule } from "../compile.ts";
import type { SequenceRule } from "../schema.ts";
import type { Kind } from "./types.ts";

/** A partial match: when it started, when its last step happened, and the step events. */
export type Partial = { start: number; last: number; ids: string[] };

/**
 * sequence state: `prog[i]` is the best partial match that has completed
 * steps 0..i (the latest start, then the latest last step: it has the most
 * room left for `within`); `done` once all steps matched. Bounded by the
 * number of steps.
 */
export type SequenceState = { k: "seq"; prog: (Partial | null)[]; done?: { at: number; ids: string[] } };

function rule(c: CompiledRule): SequenceRule {
  return c.rule as SequenceRule;
}

function better(a: Partial | null | undefined, b: Partial): boolean {
  return !a || b.start > a.start || (b.start === a.start && b.last > a.last);
}

export const sequence: Kind<SequenceState> = {
  tags: ["seq"],
  apply(prev, e, c) {
    if (prev?.done) return undefined;
    const r = rule(c);
    const n = r.steps.length;
    const prog: (Partial | null)[] = prev ? [...prev.prog] : Array.from({ length: n - 1 }, () => null);
    let done: SequenceState["done"];
    let changed = false;
    // Last step first, so that one event never fills two steps of one match.
    for (let j = n - 1; j >= 0; j--) {
      const step = r.steps[j]!;
      if (!step.event.includes(e.type) || !c.parts[j]!(e.get)) continue;
      let cand: Partial | undefined;
      if (j === 0) {
        cand = { start: e.time, last: e.time, ids: [e.id] };
      } else {
        const p = prog[j - 1];
        if (!p || e.time < p.last) continue;
        if (step.within !== undefined && e.time - p.last > step.within) continue;
        if (r.within !== undefined && e.time - p.start > r.within) continue;
        cand = { start: p.start, last: e.time, ids: [...p.ids, e.id] };
      }
      if (j === n - 1) {
        done = { at: e.time, ids: cand.ids };
        changed = true;
        break;
      }
      if (better(prog[j], cand)) {
        prog[j] = cand;
        changed = true;
      }
    }
    if (!changed) return undefined;
    if (done) return { k: "seq", prog: prog.map(() => null), done };
    // Drop partial matches that can no longer finish in time.
    if (r.within !== undefined) for (let i = 0; i < prog.length; i++) if (prog[i] && e.time - prog[i]!.start > r.within) prog[i] = null;
    return { k: "seq", prog };
  },
  met(s) {
    return s?.done ? { at: s.done.at, triggers: s.done.ids } : undefined;
  },
  progress(s, c) {
    const steps = rule(c).steps.length;
    if (s?.done) return { current: steps, target: steps, step: steps, steps };
    let step = 0;
    s?.prog.forEach((p, i) => {
      if (p) step = i + 1;
    });
    return { current: step, target: steps, step, steps };
  },
};

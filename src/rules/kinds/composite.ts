import { itemAchievement, type CompiledRule } from "../compile.ts";
import type { CompositeRule } from "../schema.ts";
import { lastN, ownEntry, TRIGGER_LIMIT, type Kind, type KindContext } from "./types.ts";

/** composite state: recent occurrences (time, event id) of each event item, by item index. */
export type CompositeState = { k: "comp"; ev: Record<string, [number, string][]> };

const KEEP_OCCURRENCES = 8;

function rule(c: CompiledRule): CompositeRule {
  return c.rule as CompositeRule;
}

function required(r: CompositeRule): number {
  return r.require === "all" ? r.of.length : r.require === "any" ? 1 : r.require;
}

/** Each item's satisfaction times (with the event behind each), oldest first. */
function itemTimes(s: CompositeState | undefined, c: CompiledRule, ctx: KindContext): [number, string][][] {
  return rule(c).of.map((item, i) => {
    const ach = itemAchievement(item);
    if (!ach) return s?.ev[i] ?? [];
    const u = ownEntry(ctx.unlocked, ach);
    return u ? [[Date.parse(u.unlocked_at), u.trigger_event_ids[u.trigger_event_ids.length - 1] ?? u.unlock_id]] : [];
  });
}

/**
 * The earliest time at which `k` items are satisfied — all within `within`
 * of each other when it is set — and the events that satisfy them.
 */
export function earliestMet(times: [number, string][][], k: number, within: number | undefined): { at: number; triggers: string[] } | undefined {
  const ends = [...new Set(times.flat().map((t) => t[0]))].sort((a, b) => a - b);
  for (const end of ends) {
    const chosen: [number, string][] = [];
    for (const list of times) {
      // The latest occurrence not after `end` (and not before end - within).
      let pick: [number, string] | undefined;
      for (const t of list) if (t[0] <= end && (within === undefined || t[0] >= end - within)) pick = t;
      if (pick) chosen.push(pick);
    }
    if (chosen.length >= k) {
      chosen.sort((a, b) => a[0] - b[0]);
      return { at: end, triggers: lastN(chosen.map((t) => t[1]), TRIGGER_LIMIT) };
    }
  }
  return undefined;
}

export const composite: Kind<CompositeState> = {
  tags: ["comp"],
  apply(prev, e, c) {
    const ev = { ...(prev?.ev ?? {}) };
    let changed = false;
    rule(c).of.forEach((item, i) => {
      if (itemAchievement(item)) return;
      const it = item as { event: string[] };
      if (!it.event.includes(e.type) || !c.parts[i]!(e.get)) return;
      const list = [...(ev[i] ?? []), [e.time, e.id] as [number, string]].sort((a, b) => a[0] - b[0]);
      ev[i] = lastN(list, KEEP_OCCURRENCES);
      changed = true;
    });
    return changed ? { k: "comp", ev } : undefined;
  },
  met(s, _target, c, _now, ctx) {
    const r = rule(c);
    return earliestMet(itemTimes(s, c, ctx), required(r), r.within);
  },
  progress(s, c, ctx) {
    const done = itemTimes(s, c, ctx).filter((l) => l.length > 0).length;
    const need = required(rule(c));
    return { current: Math.min(done, need), target: need, step: done, steps: rule(c).of.length };
  },
};

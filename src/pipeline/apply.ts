import type { ValidEvent } from "../events/mod.ts";
import { evaluate, type RuleSource, type Unlock } from "../rules/mod.ts";
import type { UserState } from "../state/mod.ts";

/** One event of a user's batch, with its stream sequence. */
export type SeqEvent = { seq: number; ev: ValidEvent };

/** What applying a user's batch did. */
export type Applied = {
  state: UserState;
  /** True when the state must be written. */
  dirty: boolean;
  applied: number;
  duplicates: number;
  unchanged: number;
  /** Events whose evaluation threw: poison, for the DLQ. */
  failed: { item: SeqEvent; error: Error }[];
  unlocks: Unlock[];
};

function pushBounded(ids: string[], id: string, max: number): string[] {
  if (max === 0) return ids;
  const next = [...ids, id];
  return next.length > max ? next.slice(next.length - max) : next;
}

/**
 * Applies a user's events (in stream order) to the user's state.
 *
 * Inputs: the stored state, the events, the tenant's rules over time.
 * Outputs: the new state (with new unlocks appended to its outbox).
 * Guarantees: an event at or below `state.seq`, or whose id is among the
 * recent ids, is not applied again; an event that changes no rule state is
 * not recorded, since applying it again changes nothing either. Pure.
 */
export function applyEvents(state: UserState, items: readonly SeqEvent[], rules: RuleSource, recentIds: number): Applied {
  let s = state;
  const out: Applied = { state, dirty: false, applied: 0, duplicates: 0, unchanged: 0, failed: [], unlocks: [] };
  for (const item of items) {
    const id = item.ev.event.event_id;
    if (item.seq <= s.seq || s.ids.includes(id)) {
      out.duplicates++;
      continue;
    }
    let r;
    try {
      r = evaluate(s.eval, item.ev, rules);
    } catch (err) {
      out.failed.push({ item, error: err instanceof Error ? err : new Error(String(err)) });
      continue;
    }
    if (!r.changed) {
      out.unchanged++;
      continue;
    }
    s = {
      ...s,
      seq: item.seq,
      ids: pushBounded(s.ids, id, recentIds),
      eval: r.state,
      outbox: r.unlocks.length ? [...s.outbox, ...r.unlocks] : s.outbox,
    };
    out.unlocks.push(...r.unlocks);
    out.applied++;
    out.dirty = true;
  }
  out.state = s;
  return out;
}

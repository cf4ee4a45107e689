import type { ValidEvent } from "../events/mod.ts";
import { evaluate, needsOrdering, type RuleSource, type Unlock } from "../rules/mod.ts";
import type { UserState } from "../state/mod.ts";

/** One event of a user's batch, with its stream sequence. */
export type SeqEvent = { seq: number; ev: ValidEvent };

/** What applying a user's events did. */
export type Applied = {
  state: UserState;
  /** True when the state must be written. */
  dirty: boolean;
  applied: number;
  duplicates: number;
  unchanged: number;
  /** Eager phase: events that must still pass the reorder window for the ordered phase. */
  toOrder: SeqEvent[];
  /** Events whose evaluation threw: poison, for the DLQ. */
  failed: { item: SeqEvent; error: Error }[];
  unlocks: Unlock[];
};

function pushBounded(ids: string[], id: string, max: number): string[] {
  if (max === 0) return ids;
  const next = [...ids, id];
  return next.length > max ? next.slice(next.length - max) : next;
}

function before(a: readonly [number, number], b: readonly [number, number]): boolean {
  return a[0] < b[0] || (a[0] === b[0] && a[1] <= b[1]);
}

/**
 * Applies a user's events to the user's state, for one phase.
 *
 * - `eager` (events in stream order): every rule but sequences. An event at
 *   or below `state.seq` is a redelivery; one whose id is among the recent
 *   ids is a producer's retry; neither is applied again. Events that
 *   sequences listen to are returned in `toOrder` (redeliveries too: their
 *   ordered half may not have happened yet; retries not).
 * - `ordered` (events released by the reorder window, in event-time order):
 *   sequences only. An event at or before `state.ot` (event time, stream
 *   sequence) was applied already, or is late: a later event of this user
 *   already went through.
 * - `all`: both at once, in the order given (the simulator and the oracle).
 *
 * An event that changes no order-insensitive rule state is not recorded:
 * applying it again changes nothing either. Every event sequences see is
 * recorded. Pure.
 */
export function applyEvents(state: UserState, items: readonly SeqEvent[], rules: RuleSource, recentIds: number, phase: "eager" | "ordered" | "all" = "all"): Applied {
  let s = state;
  const out: Applied = { state, dirty: false, applied: 0, duplicates: 0, unchanged: 0, toOrder: [], failed: [], unlocks: [] };
  for (const item of items) {
    const id = item.ev.event.event_id;
    const at: [number, number] = [item.ev.occurredAt, item.seq];
    if (phase === "ordered") {
      // Applied before a crash (a redelivery), or late: a later event of this user went through already.
      if (s.ot && before(at, s.ot)) {
        out.duplicates++;
        continue;
      }
    } else {
      const redelivered = item.seq <= s.seq;
      if (redelivered || s.ids.includes(id)) {
        out.duplicates++;
        if (phase === "eager" && redelivered && needsOrdering(item.ev, rules)) out.toOrder.push(item);
        continue;
      }
      if (phase === "eager" && needsOrdering(item.ev, rules)) out.toOrder.push(item);
    }
    let r;
    try {
      r = evaluate(s.eval, item.ev, rules, phase);
    } catch (err) {
      out.failed.push({ item, error: err instanceof Error ? err : new Error(String(err)) });
      continue;
    }
    // Order-insensitive rules: an event that changes nothing now never will,
    // so it need not be remembered. Sequences differ (a step that arrives
    // before its predecessor changes nothing, but would later), so every
    // event they see is remembered.
    if (!r.changed && (phase === "eager" || !needsOrdering(item.ev, rules))) {
      out.unchanged++;
      continue;
    }
    s = {
      ...s,
      ...(phase === "ordered" ? { ot: at } : { seq: Math.max(s.seq, item.seq) }),
      ...(phase === "all" ? { ot: s.ot && before(at, s.ot) ? s.ot : at } : {}),
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

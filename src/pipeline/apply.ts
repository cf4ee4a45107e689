import type { ValidEvent } from "../events/mod.ts";
import { evaluate, needsOrdering, type RuleSource, type Unlock } from "../rules/mod.ts";
import type { UserState } from "../state/mod.ts";
import { fingerprintOf, MAX_FINGERPRINTS, type FingerprintSpec } from "./fingerprint.ts";

/** One event of a user's batch, with its stream sequence. */
export type SeqEvent = { seq: number; ev: ValidEvent };

/** What applying a user's events did. */
export type Applied = {
  state: UserState;
  /** True when the state must be written. */
  dirty: boolean;
  applied: number;
  duplicates: number;
  /** Events dropped as near-duplicates of another event (business fingerprint). */
  fingerprinted: number;
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

/** Keeps the fingerprints that can still match: inside the longest window of the newest, at most MAX_FINGERPRINTS. */
function pruneFingerprints(fp: Record<string, number>, newest: number, specs: readonly FingerprintSpec[]): Record<string, number> {
  const horizon = Math.max(...specs.map((s) => s.within));
  const kept = Object.entries(fp)
    .filter(([, t]) => t >= newest - horizon)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, MAX_FINGERPRINTS);
  return Object.fromEntries(kept.sort((a, b) => (a[0] < b[0] ? -1 : 1)));
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
export function applyEvents(
  state: UserState,
  items: readonly SeqEvent[],
  rules: RuleSource,
  recentIds: number,
  phase: "eager" | "ordered" | "all" = "all",
  fingerprints: readonly FingerprintSpec[] = [],
): Applied {
  let s = state;
  const out: Applied = { state, dirty: false, applied: 0, duplicates: 0, fingerprinted: 0, unchanged: 0, toOrder: [], failed: [], unlocks: [] };
  for (const item of items) {
    const id = item.ev.event.event_id;
    const at: [number, number] = [item.ev.occurredAt, item.seq];
    let fingerprinted = false;
    if (phase === "ordered") {
      // Applied before a crash (a redelivery), or late: a later event of this user went through already.
      if (s.ot && before(at, s.ot)) {
        out.duplicates++;
        continue;
      }
    } else {
      const redelivered = item.seq <= s.seq;
      if (redelivered || s.ids.includes(id) || s.oids?.includes(id)) {
        out.duplicates++;
        if (phase === "eager" && redelivered && needsOrdering(item.ev, rules)) out.toOrder.push(item);
        continue;
      }
      // Business fingerprint: the same action reported again (another source, another id) within the window.
      const fp = fingerprintOf(item.ev, fingerprints);
      const seen = fp ? s.fp?.[fp.key] : undefined;
      if (fp && seen !== undefined && Math.abs(seen - item.ev.occurredAt) <= fp.within) {
        out.fingerprinted++;
        continue;
      }
      if (fp) {
        s = { ...s, fp: pruneFingerprints({ ...s.fp, [fp.key]: item.ev.occurredAt }, item.ev.occurredAt, fingerprints) };
        fingerprinted = true;
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
    // event they see is remembered, and so is every fingerprinted one.
    if (!r.changed && !fingerprinted && (phase === "eager" || !needsOrdering(item.ev, rules))) {
      out.unchanged++;
      continue;
    }
    s = {
      ...s,
      ...(phase === "ordered" ? { ot: at } : { seq: Math.max(s.seq, item.seq) }),
      ...(phase === "all" ? { ot: s.ot && before(at, s.ot) ? s.ot : at } : {}),
      // The phases keep separate id lists: each is then filled in one deterministic order.
      ...(phase === "ordered" ? { oids: pushBounded(s.oids ?? [], id, recentIds) } : { ids: pushBounded(s.ids, id, recentIds) }),
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

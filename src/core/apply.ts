import type { ValidEvent } from "../events/mod.ts";
import { evaluate, needsOrdering, type RuleSource, type Unlock } from "../rules/mod.ts";
import { fingerprintMatch, fingerprintOf, MAX_FINGERPRINTS, type FingerprintSpec } from "./fingerprint.ts";
import type { UserState } from "./user-state.ts";

/** One event of a user's batch, with its stream sequence. */
export type SeqEvent = { seq: number; ev: ValidEvent };

/**
 * A full list of recent event ids, moved out of the user's state into the
 * seen-ids archive (KV, written by `state/seen.ts`) so that state stays
 * small while every recorded id can still be checked: `from`..`to` is the
 * event-time range of its events, which is where a retry of one of them
 * would fall.
 */
export type SeenChunk = { phase: "e" | "o"; n: number; ids: string[]; from: number; to: number };

/** Archived chunks kept per phase in a state (the oldest are forgotten beyond this). */
export const MAX_CHUNKS = 256;

/** The archived chunks (phase, number) whose time range holds `time`: where an old event's id would be. */
export function chunksCovering(state: UserState, time: number): { phase: "e" | "o"; n: number }[] {
  const out: { phase: "e" | "o"; n: number }[] = [];
  for (const phase of ["e", "o"] as const) for (const [n, from, to] of state.arch?.[phase] ?? []) if (from <= time && time <= to) out.push({ phase, n });
  return out;
}

/** True when the state already knows `item` without the archive: a redelivery, or an id in the recent lists. */
function knownToState(s: UserState, item: SeqEvent): boolean {
  const id = item.ev.event.event_id;
  return item.seq <= s.seq || s.ids.includes(id) || s.oids?.includes(id) === true;
}

/** The archived chunks to read before applying `items`: those covering events the state does not know by itself. */
export function chunksToLoad(state: UserState, items: readonly SeqEvent[]): { phase: "e" | "o"; n: number }[] {
  const need = new Map<string, { phase: "e" | "o"; n: number }>();
  for (const item of items) {
    if (knownToState(state, item)) continue;
    for (const c of chunksCovering(state, item.ev.occurredAt)) need.set(`${c.phase}.${c.n}`, c);
  }
  return [...need.values()];
}

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
  /** Id lists to write to the seen-ids archive before the state is stored. */
  chunks: SeenChunk[];
};

/**
 * Records event `id` (at `time`) in the phase's recent list; when the list
 * holds `size` ids it becomes a chunk for the archive and starts over.
 */
function record(s: UserState, phase: "e" | "o", id: string, time: number, size: number, chunks: SeenChunk[]): UserState {
  if (size === 0) return s;
  const ids = [...((phase === "e" ? s.ids : s.oids) ?? []), id];
  const prev = phase === "e" ? s.it : s.oit;
  const range: [number, number] = prev ? [Math.min(prev[0], time), Math.max(prev[1], time)] : [time, time];
  if (ids.length < size) return phase === "e" ? { ...s, ids, it: range } : { ...s, oids: ids, oit: range };
  const list = s.arch?.[phase] ?? [];
  const n = list.length ? list[list.length - 1]![0] + 1 : 0;
  chunks.push({ phase, n, ids, from: range[0], to: range[1] });
  const arch = { e: s.arch?.e ?? [], o: s.arch?.o ?? [], [phase]: [...list, [n, range[0], range[1]] as [number, number, number]].slice(-MAX_CHUNKS) };
  const { it: _it, oit: _oit, ...rest } = s;
  return phase === "e" ? { ...rest, ...(s.oit ? { oit: s.oit } : {}), ids: [], arch } : { ...rest, ...(s.it ? { it: s.it } : {}), oids: [], arch };
}

/** Keeps the fingerprints that can still match: inside the longest window of the newest, at most MAX_FINGERPRINTS. */
function pruneFingerprints(fp: Record<string, number>, newest: number, horizon: number): Record<string, number> {
  let kept = Object.entries(fp).filter(([, t]) => t >= newest - horizon);
  // Beyond the cap, the newest win. (Key order does not matter: the stored state sorts it.)
  if (kept.length > MAX_FINGERPRINTS) kept = kept.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, MAX_FINGERPRINTS);
  return Object.fromEntries(kept);
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
  /** Ids read from the archive chunks that cover these events' times ({@link chunksCovering}). */
  archived: ReadonlySet<string> = new Set(),
): Applied {
  let s = state;
  const out: Applied = { state, dirty: false, applied: 0, duplicates: 0, fingerprinted: 0, unchanged: 0, toOrder: [], failed: [], unlocks: [], chunks: [] };
  const horizon = fingerprints.length ? Math.max(...fingerprints.map((f) => f.within)) : 0;
  const inChunks = (id: string) => archived.has(id) || out.chunks.some((c) => c.ids.includes(id));
  for (const item of items) {
    const id = item.ev.event.event_id;
    const at: [number, number] = [item.ev.occurredAt, item.seq];
    const ordered = needsOrdering(item.ev, rules);
    // What a fresh event adds besides its evaluation; kept only if the evaluation succeeds,
    // so an event that fails (and goes to the DLQ) leaves no trace that would drop its redrive.
    let fpState: UserState | undefined;
    if (phase === "ordered") {
      // Applied before a crash (a redelivery), or late: a later event of this user went through already.
      if (s.ot && before(at, s.ot)) {
        out.duplicates++;
        continue;
      }
    } else {
      const redelivered = item.seq <= s.seq;
      if (knownToState(s, item) || inChunks(id)) {
        out.duplicates++;
        if (phase === "eager" && redelivered && ordered) out.toOrder.push(item);
        continue;
      }
      // Business fingerprint: the same action reported again (another source, another id) within the window.
      const fp = fingerprintOf(item.ev, fingerprints);
      if (fingerprintMatch(fp, s.fp, item.ev.occurredAt) !== undefined) {
        out.fingerprinted++;
        continue;
      }
      if (fp) fpState = { ...s, fp: pruneFingerprints({ ...s.fp, [fp.key]: item.ev.occurredAt }, item.ev.occurredAt, horizon) };
    }
    let r;
    try {
      r = evaluate(s.eval, item.ev, rules, phase);
    } catch (err) {
      out.failed.push({ item, error: err instanceof Error ? err : new Error(String(err)) });
      continue;
    }
    const fingerprinted = fpState !== undefined;
    if (fpState) s = fpState;
    if (phase === "eager" && ordered) out.toOrder.push(item);
    // Order-insensitive rules: an event that changes nothing now never will,
    // so it need not be remembered. Sequences differ (a step that arrives
    // before its predecessor changes nothing, but would later), so every
    // event they see is remembered, and so is every fingerprinted one.
    if (!r.changed && !fingerprinted && (phase === "eager" || !ordered)) {
      out.unchanged++;
      continue;
    }
    s = {
      ...s,
      ...(phase === "ordered" ? { ot: at } : { seq: Math.max(s.seq, item.seq) }),
      ...(phase === "all" ? { ot: s.ot && before(at, s.ot) ? s.ot : at } : {}),
      eval: r.state,
      outbox: r.unlocks.length ? [...s.outbox, ...r.unlocks] : s.outbox,
    };
    // The phases keep separate id lists: each is then filled in one deterministic order.
    s = record(s, phase === "ordered" ? "o" : "e", id, item.ev.occurredAt, recentIds, out.chunks);
    out.unlocks.push(...r.unlocks);
    out.applied++;
    out.dirty = true;
  }
  out.state = s;
  return out;
}

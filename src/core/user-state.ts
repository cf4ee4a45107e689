import { achievementKey, emptyEvalState, type EvalState, type Unlock, type UnlockRef } from "../rules/mod.ts";

/**
 * Everything the engine keeps per (tenant, user), stored as one KV value and
 * written with compare-and-set.
 *
 * - `seq`: stream sequence of the last event applied by the eager phase; a
 *   redelivery at or below it has been applied already (events of one user
 *   arrive in stream order through one partition; the worker rewinds on any
 *   delivery gap).
 * - `ot`: (event time, stream sequence) of the last event applied by the
 *   ordered phase, which sees events in event-time order after the reorder
 *   window; anything at or before it is done (or late).
 * - `ids`, `oids`: the latest event ids applied by the eager and the
 *   ordered phase. When a list is full it moves to the seen-ids archive (a
 *   KV record per chunk) and `arch` keeps each chunk's event-time range, so
 *   a producer's retry long after JetStream's duplicate window is found by
 *   its event time and still counts once.
 * - `fp`: business fingerprints seen recently, with their event times.
 * - `eval`: the evaluator's state (progress and unlocks).
 * - `outbox`: unlocks committed with this state. Delivered right after the
 *   write; an entry may stay here after delivery until the user's next
 *   write, and delivering it again is refused by the unlocks stream (one
 *   message per unlock subject).
 */
export type UserState = {
  v: 1;
  seq: number;
  ot?: [number, number];
  ids: string[];
  /** Event-time range of `ids`. */
  it?: [number, number];
  oids?: string[];
  /** Event-time range of `oids`. */
  oit?: [number, number];
  /** Archived id chunks per phase: [number, from, to] (event time). */
  arch?: { e: [number, number, number][]; o: [number, number, number][] };
  fp?: Record<string, number>;
  eval: EvalState;
  outbox: Unlock[];
};

/** The state of a user never seen before. */
export function emptyUserState(): UserState {
  return { v: 1, seq: 0, ids: [], eval: emptyEvalState(), outbox: [] };
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The map with its keys in order: itself when they are in order already
 * (most states: a map keeps the order it was encoded in), else a copy
 * whose `fromEntries` defines each key as data, so no key can reach the
 * prototype.
 */
function sorted<T>(o: Record<string, T>): Record<string, T> {
  const keys = Object.keys(o);
  let inOrder = true;
  for (let i = 1; i < keys.length && inOrder; i++) inOrder = keys[i - 1]! < keys[i]!;
  if (inOrder) return o;
  return Object.fromEntries(keys.sort().map((k) => [k, o[k]!]));
}

/**
 * Canonical JSON of a state: fields in a fixed order and maps keyed by rule,
 * achievement or fingerprint in key order, so the same state has the same
 * bytes whatever order its parts were filled in.
 */
export function encodeState(s: UserState): Uint8Array {
  // Fields in a fixed order too: which phase first adds ot, oids or fp depends on timing.
  const out: UserState = { v: s.v, seq: s.seq, ids: s.ids, eval: { rules: sorted(s.eval.rules), unlocked: sorted(s.eval.unlocked) }, outbox: s.outbox };
  const fixed = {
    v: out.v,
    seq: out.seq,
    ...(s.ot ? { ot: s.ot } : {}),
    ids: out.ids,
    ...(s.it ? { it: s.it } : {}),
    ...(s.oids ? { oids: s.oids } : {}),
    ...(s.oit ? { oit: s.oit } : {}),
    ...(s.arch ? { arch: { e: s.arch.e, o: s.arch.o } } : {}),
    ...(s.fp ? { fp: sorted(s.fp) } : {}),
    eval: out.eval,
    outbox: out.outbox,
  };
  return enc.encode(JSON.stringify(fixed));
}

/** A state from its stored bytes; throws on bytes that are not a state of a version this engine knows. */
export function decodeState(b: Uint8Array): UserState {
  const s = JSON.parse(dec.decode(b)) as UserState;
  if (s.v !== 1) throw new Error(`unknown user state version ${String(s.v)}`);
  return s;
}

/** An unlock as a state, a record or a published event names it. */
type UnlockFields = UnlockRef & { achievement_id: string; period?: string };

/** The key of an unlock among a state's unlocked achievements (`id`, `id:tier`, plus `#<occurrence>` for a repeatable rule's). */
export function unlockedKey(u: UnlockFields): string {
  return achievementKey(u.achievement_id, u.tier, u.period ? u.occurrence : undefined);
}

/**
 * The state with `u` among its unlocked achievements — an unlock recorded
 * outside the state's own evaluation (a backfill, a record kept by a
 * rebuild) — or undefined when the state has it already. Pure.
 */
export function withUnlock(s: UserState, u: UnlockFields): UserState | undefined {
  const k = unlockedKey(u);
  if (s.eval.unlocked[k]) return undefined;
  const ref: UnlockRef = { unlock_id: u.unlock_id, rule_id: u.rule_id, rule_version: u.rule_version, tier: u.tier, occurrence: u.occurrence, unlocked_at: u.unlocked_at, trigger_event_ids: u.trigger_event_ids };
  return { ...s, eval: { ...s.eval, unlocked: { ...s.eval.unlocked, [k]: ref } } };
}

import type { CompiledRule, EvalEvent } from "../compile.ts";

/** What the evaluator remembers of one unlock. */
export type UnlockRef = {
  unlock_id: string;
  rule_id: string;
  rule_version: number;
  tier: string | null;
  occurrence: number;
  unlocked_at: string;
  trigger_event_ids: string[];
};

/** When a level was met and by which events. */
export type Met = { at: number; triggers: string[] };

/** What a kind may read besides its own state. */
export type KindContext = {
  unlocked: Readonly<Record<string, UnlockRef>>;
  /** Time zone of the current event for this rule. */
  tz: string;
};

/** Progress figures of one rule for the API: current (and a target when it is not the level's), plus kind-specific extras. */
export type ProgressFigures = { current: number; target?: number; best?: number; step?: number; steps?: number };

/**
 * One rule type's state machine. States are plain JSON with a `k` tag; a
 * state with another tag (the rule changed type between versions) is
 * treated as absent.
 */
export type Kind<S extends { k: string }> = {
  /** State tags this kind reads; a state with another tag (the rule changed type) counts as absent. */
  readonly tags: readonly S["k"][];
  /** Applies an admitted event; returns the new state, or undefined when nothing changed. Must not mutate `prev`. */
  apply(prev: S | undefined, e: EvalEvent, c: CompiledRule, ctx: KindContext): S | undefined;
  /**
   * Whether a level with `target` is met, and when: the event time at which
   * it became true (from the state, not the current event, so that a late
   * event does not move an unlock earlier than the events that earned it).
   */
  met(state: S | undefined, target: number, c: CompiledRule, now: number, ctx: KindContext): Met | undefined;
  progress(state: S | undefined, c: CompiledRule, ctx: KindContext): ProgressFigures;
};

/** At most this many event ids are kept as an unlock's provenance. */
export const TRIGGER_LIMIT = 16;

/** The last `n` items of a list (a new array when it is longer). */
export function lastN<T>(list: readonly T[], n: number): T[] {
  return list.length > n ? list.slice(list.length - n) : [...list];
}

/** Highest target of a rule's ladder. */
export function maxTarget(c: CompiledRule): number {
  return c.levels[c.levels.length - 1]!.target;
}

/**
 * The entry of `key` in a map kept as a plain object (states and unlocks
 * by rule id or achievement key, read back from JSON): own entries only,
 * so a rule named `constructor` does not find `Object.prototype.constructor`.
 */
export function ownEntry<T>(map: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(map, key) ? map[key] : undefined;
}

/** Sets `key` in a plain-object map as an own data entry (even `__proto__`, which assignment would turn into the prototype). */
export function setOwnEntry<T>(map: Record<string, T>, key: string, value: T): void {
  if (key === "__proto__") Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
  else map[key] = value;
}

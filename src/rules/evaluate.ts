/**
 * The evaluator: one event against a user's state, for every rule in force.
 * Longer than the house's ~300 lines on purpose: the per-event loop, the
 * repeatable-period bookkeeping and the unlock ids it shares are one hot
 * path, kept together so a change to one sees the others (the rule kinds
 * themselves live in ./kinds/).
 */
import { hash } from "node:crypto";
import { ruleValue, type ValidEvent } from "../events/mod.ts";
import { isValidTimeZone, periodIndex, periodLabel } from "../util/time.ts";
import type { CompiledRule, EvalEvent } from "./compile.ts";
import { kindOf, ownEntry, setOwnEntry, type Kind, type KindContext, type UnlockRef } from "./kinds/mod.ts";
import type { RuleSet, RuleSource } from "./ruleset.ts";

export { TRIGGER_LIMIT, type UnlockRef } from "./kinds/mod.ts";

/**
 * The evaluator's per-user state: each rule's state (by rule id, or
 * `id#<period>` for repeatable rules) and each unlock (by achievement key).
 * Plain objects (they are stored as JSON), so every read goes through
 * {@link ownEntry}: a rule id such as `constructor` must not find
 * `Object.prototype`'s.
 */
export type EvalState = { rules: Record<string, { k: string }>; unlocked: Record<string, UnlockRef> };

/** An unlock decided by the evaluator (everything but processing time). */
export type Unlock = UnlockRef & {
  tenant_id: string;
  user_id: string;
  achievement_id: string;
  /** For repeatable rules: the period, e.g. `2026-04-13` or `2026-W16`. */
  period?: string;
  title?: string;
  reward?: Record<string, unknown>;
};

/**
 * Which rules an evaluation applies: `all`; `eager`, the rules whose outcome
 * does not depend on the order events arrive in (everything but sequences),
 * applied as soon as an event arrives; or `ordered`, the sequences, applied
 * in event-time order once the reorder window releases the event.
 * Unlocks of either phase cascade to prerequisites and composites.
 */
export type Phase = "all" | "eager" | "ordered";

/** The result of applying one event. */
export type Evaluation = { state: EvalState; unlocks: Unlock[]; changed: boolean };

/** Repeatable rules keep this many periods of state and of unlock records. */
const KEEP_OCCURRENCES = 8;

/** A fresh, empty evaluator state. */
export function emptyEvalState(): EvalState {
  return { rules: {}, unlocked: {} };
}

/**
 * Deterministic unlock id from (tenant, user, achievement, tier, occurrence):
 * the same unlock computed twice, anywhere, has the same id, which is what
 * lets JetStream's `Nats-Msg-Id` dedup and the create-only record agree.
 */
export function unlockId(tenant: string, user: string, achievement: string, tier: string | null, occurrence: number): string {
  return `ul_${hash("sha256", [tenant, user, achievement, tier ?? "", String(occurrence)].join("\u0000"), "hex").slice(0, 32)}`;
}

/** Key of an unlock in {@link EvalState.unlocked}: `id`, `id:tier`, plus `#<period>` for repeatable rules. */
export function achievementKey(achievement: string, tier: string | null, occurrence?: number | null): string {
  const base = tier ? `${achievement}:${tier}` : achievement;
  return occurrence === undefined || occurrence === null ? base : `${base}#${occurrence}`;
}

/** Rules read fields through {@link ruleValue}: numbers beyond ±1e15 read as missing. */
function getter(ev: ValidEvent): (path: string) => unknown {
  return (path) => ruleValue(ev.event, path);
}

/** The event's own time zone (`attributes.timezone`), when it names a valid one; rules fall back to theirs. */
function eventZone(e: EvalEvent): string | undefined {
  const tz = e.get("attributes.timezone");
  return typeof tz === "string" && isValidTimeZone(tz) ? tz : undefined;
}

/** Key of a rule's state in {@link EvalState.rules}: its id, plus `#<period>` for repeatable rules. */
function ruleStateKey(c: CompiledRule, occ: number | null): string {
  return achievementKey(c.id, null, occ);
}

type Maps = Pick<EvalState, "rules" | "unlocked">;

/** Working copy of a state: copy-on-write maps, so unchanged parts stay shared. */
class Draft {
  rules: EvalState["rules"];
  unlocked: EvalState["unlocked"];
  readonly #copied = { rules: false, unlocked: false };
  readonly unlocks: Unlock[] = [];

  constructor(base: EvalState) {
    this.rules = base.rules;
    this.unlocked = base.unlocked;
  }

  /** The map, copied on its first change. */
  #own<K extends keyof Maps>(which: K): Maps[K] {
    if (!this.#copied[which]) {
      this[which] = { ...this[which] };
      this.#copied[which] = true;
    }
    return this[which];
  }

  setRule(key: string, s: { k: string }): void {
    setOwnEntry(this.#own("rules"), key, s);
  }

  addUnlock(key: string, ref: UnlockRef): void {
    setOwnEntry(this.#own("unlocked"), key, ref);
  }

  drop(which: keyof Maps, key: string): void {
    if (Object.hasOwn(this[which], key)) delete this.#own(which)[key];
  }

  get changed(): boolean {
    return this.#copied.rules || this.#copied.unlocked;
  }
}

/** What the evaluator derives once per compiled rule: its state machine, and its keys when it is not repeatable. */
type Plan = { kind: Kind<{ k: string }>; tags: ReadonlySet<string>; stateKey: string; levelKeys: string[] };
const plans = new WeakMap<CompiledRule, Plan>();

function planOf(c: CompiledRule): Plan {
  let p = plans.get(c);
  if (!p) {
    const kind = kindOf(c.rule);
    p = { kind, tags: new Set(kind.tags), stateKey: ruleStateKey(c, null), levelKeys: c.levels.map((l) => achievementKey(c.id, l.tier)) };
    plans.set(c, p);
  }
  return p;
}

/** Key of `c`'s state for occurrence `occ` (from the plan when the rule is not repeatable). */
function stateKeyOf(c: CompiledRule, occ: number | null): string {
  return occ === null ? planOf(c).stateKey : ruleStateKey(c, occ);
}

/** Key of the unlock of level `i` of `c` (for occurrence `occ`). */
function levelKey(c: CompiledRule, p: Plan, i: number, occ: number | null): string {
  return occ === null ? p.levelKeys[i]! : achievementKey(c.id, c.levels[i]!.tier, occ);
}

function stateOf(c: CompiledRule, raw: { k: string } | undefined): { k: string } | undefined {
  return raw && planOf(c).tags.has(raw.k) ? raw : undefined;
}

/** The period of a repeatable rule for an event time in zone `tz`; null for other rules. */
function occurrenceOf(c: CompiledRule, time: number, tz: string): number | null {
  return c.rule.repeatable ? periodIndex(time, tz, c.rule.repeatable.every) : null;
}

/** The state and unlock entries a repeatable rule keeps per period: where each is, its key, its period. */
function occurrences(d: Draft, c: CompiledRule): { which: keyof Maps; key: string; occ: number }[] {
  const out: { which: keyof Maps; key: string; occ: number }[] = [];
  const prefix = `${c.id}#`;
  for (const key of Object.keys(d.rules)) if (key.startsWith(prefix)) out.push({ which: "rules", key, occ: Number(key.slice(prefix.length)) });
  for (const key of Object.keys(d.unlocked)) {
    const hash = key.lastIndexOf("#");
    if (hash > 0 && key.split(/[:#]/)[0] === c.id) out.push({ which: "unlocked", key, occ: Number(key.slice(hash + 1)) });
  }
  return out;
}

/** The newest period a repeatable rule has state or unlocks for (-Infinity when none). */
function newestOccurrence(d: Draft, c: CompiledRule): number {
  return occurrences(d, c).reduce((newest, o) => Math.max(newest, o.occ), Number.NEGATIVE_INFINITY);
}

/** Forgets the state and unlock records of periods of a repeatable rule older than the kept ones. */
function pruneOccurrences(d: Draft, c: CompiledRule, newest: number): void {
  for (const o of occurrences(d, c)) if (o.occ <= newest - KEEP_OCCURRENCES) d.drop(o.which, o.key);
}

/**
 * Unlocks every level of `c` (for occurrence `occ`) that is met and whose
 * prerequisites are unlocked. `unlocked_at` is when the last condition
 * became true: the level's own time, or a later prerequisite's.
 */
function tryUnlock(d: Draft, c: CompiledRule, occ: number | null, e: EvalEvent, ev: ValidEvent, tz: string): void {
  const p = planOf(c);
  const state = stateOf(c, ownEntry(d.rules, stateKeyOf(c, occ)));
  const ctx: KindContext = { unlocked: d.unlocked, tz };
  const kind = p.kind;
  for (let i = 0; i < c.levels.length; i++) {
    const level = c.levels[i]!;
    const key = levelKey(c, p, i, occ);
    if (ownEntry(d.unlocked, key)) continue;
    const met = kind.met(state, level.target, c, e.time, ctx);
    if (!met) return; // higher tiers are not met either
    let at = met.at;
    for (const p of c.rule.prerequisites) {
      const u = ownEntry(d.unlocked, p);
      if (!u) return;
      at = Math.max(at, Date.parse(u.unlocked_at));
    }
    // Not before the version that decides it took effect (a composite's items may be older).
    at = Math.max(at, c.effectiveFrom);
    if (!c.inWindow(at)) return;
    const { tenant_id, user_id } = ev.event;
    const ref: UnlockRef = {
      unlock_id: unlockId(tenant_id, user_id, c.id, level.tier, occ ?? 1),
      rule_id: c.id,
      rule_version: c.version,
      tier: level.tier,
      occurrence: occ ?? 1,
      unlocked_at: new Date(at).toISOString(),
      trigger_event_ids: met.triggers,
    };
    d.addUnlock(key, ref);
    const r = c.rule;
    d.unlocks.push({
      ...ref,
      tenant_id,
      user_id,
      achievement_id: c.id,
      ...(occ !== null && r.repeatable ? { period: periodLabel(occ, r.repeatable.every) } : {}),
      ...(r.title ? { title: r.title } : {}),
      ...(r.reward ? { reward: r.reward } : {}),
    });
  }
}

/** True when every level of `c` (for occurrence `occ`) is unlocked: the rule has nothing left to do. */
function finished(d: Draft, c: CompiledRule, occ: number | null): boolean {
  const p = planOf(c);
  for (let i = 0; i < c.levels.length; i++) if (ownEntry(d.unlocked, levelKey(c, p, i, occ)) === undefined) return false;
  return true;
}

/**
 * Applies one event to a user's state under the rules in force at the
 * event's time (all of them, or one {@link Phase}'s).
 *
 * Pure: no clock, no I/O, no randomness; time comes only from the event.
 * The input state is not modified; unchanged parts are shared with the
 * result, and `changed` is false when nothing at all changed (so the caller
 * need not store anything). A rule whose levels are all unlocked stops
 * changing. Unlocks cascade: an unlock can complete prerequisites and
 * composites, which are settled in dependency order within the same event.
 */
export function evaluate(state: EvalState, ev: ValidEvent, rules: RuleSource, phase: Phase = "all"): Evaluation {
  const set: RuleSet = rules.at(ev.occurredAt);
  const e: EvalEvent = { id: ev.event.event_id, type: ev.event.event_type, time: ev.occurredAt, get: getter(ev) };
  const d = new Draft(state);
  const evTz = eventZone(e);
  for (const c of set.byEventType.get(e.type) ?? []) {
    if (phase !== "all" && c.ordered !== (phase === "ordered")) continue;
    if (!c.admits(e)) continue;
    const tz = evTz ?? c.rule.timezone;
    const occ = occurrenceOf(c, e.time, tz);
    // A period older than the kept ones is over: its unlocks may have been forgotten, so it must not unlock again.
    if (occ !== null && occ <= newestOccurrence(d, c) - KEEP_OCCURRENCES) continue;
    if (finished(d, c, occ)) continue;
    const stateKey = stateKeyOf(c, occ);
    const next = planOf(c).kind.apply(stateOf(c, ownEntry(d.rules, stateKey)), e, c, { unlocked: d.unlocked, tz });
    if (next === undefined) continue;
    d.setRule(stateKey, next);
    if (occ !== null) pruneOccurrences(d, c, occ);
    tryUnlock(d, c, occ, e, ev, tz);
  }
  if (d.unlocks.length > 0 && set.dependents.length > 0) {
    // Settle: unlocks may complete other rules' prerequisites or composite items.
    // A repeatable rule settles the occurrence of the current event's period.
    const settling = set.dependents.filter((c) => c.admits(e)).map((c) => {
      const tz = evTz ?? c.rule.timezone;
      return { c, tz, occ: occurrenceOf(c, e.time, tz) };
    });
    for (let before = -1; before !== d.unlocks.length; ) {
      before = d.unlocks.length;
      for (const { c, tz, occ } of settling) if (!finished(d, c, occ)) tryUnlock(d, c, occ, e, ev, tz);
    }
  }
  if (!d.changed) return { state, unlocks: [], changed: false };
  return { state: { rules: d.rules, unlocked: d.unlocked }, unlocks: d.unlocks, changed: true };
}

/** True when some order-sensitive rule in force at the event's time listens to its type: the event must pass the reorder window. */
export function needsOrdering(ev: ValidEvent, rules: RuleSource): boolean {
  return rules.at(ev.occurredAt).orderedTypes.has(ev.event.event_type);
}

/** Progress of one achievement for the API. */
export type Progress = {
  achievement_id: string;
  tier: string | null;
  rule_id: string;
  rule_version: number;
  type: string;
  title?: string;
  current: number;
  target: number;
  best?: number;
  step?: number;
  steps?: number;
  period?: string;
};

/**
 * Progress of every rule in `set` towards its next locked level (hidden
 * rules omitted). `now` picks the period of repeatable rules (the API passes
 * the wall clock; the evaluator never reads it).
 */
export function progressOf(state: EvalState, set: RuleSet, now: number): Progress[] {
  const out: Progress[] = [];
  for (const c of set.rules) {
    const r = c.rule;
    if (r.hidden) continue;
    const occ = r.repeatable ? periodIndex(now, r.timezone, r.repeatable.every) : null;
    const level = c.levels.find((l) => !ownEntry(state.unlocked, achievementKey(c.id, l.tier, occ)));
    if (!level) continue;
    const fig = planOf(c).kind.progress(stateOf(c, ownEntry(state.rules, ruleStateKey(c, occ))), c, { unlocked: state.unlocked, tz: r.timezone });
    out.push({
      achievement_id: c.id,
      tier: level.tier,
      rule_id: c.id,
      rule_version: c.version,
      type: r.type,
      ...(r.title ? { title: r.title } : {}),
      ...fig,
      current: Math.min(fig.current, fig.target ?? level.target),
      target: fig.target ?? level.target,
      ...(occ !== null && r.repeatable ? { period: periodLabel(occ, r.repeatable.every) } : {}),
    });
  }
  return out;
}

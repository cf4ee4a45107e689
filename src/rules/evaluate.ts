import { createHash } from "node:crypto";
import type { ValidEvent } from "../events/mod.ts";
import type { CompiledRule, RuleSet } from "./ruleset.ts";

/** At most this many event ids are kept as an unlock's provenance. */
export const TRIGGER_LIMIT = 16;

/** Progress of one count rule: qualifying events seen and the latest ids. */
export type CountState = { n: number; ids: string[] };

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

/** The evaluator's per-user state: progress per rule, unlocks per achievement key. */
export type EvalState = { rules: Record<string, CountState>; unlocked: Record<string, UnlockRef> };

/** An unlock decided by the evaluator (everything but processing time). */
export type Unlock = UnlockRef & { tenant_id: string; user_id: string; achievement_id: string; title?: string; reward?: Record<string, unknown> };

/** The result of applying one event. */
export type Evaluation = { state: EvalState; unlocks: Unlock[]; changed: boolean };

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
  const h = createHash("sha256").update([tenant, user, achievement, tier ?? "", String(occurrence)].join("\u0000"));
  return `ul_${h.digest("hex").slice(0, 32)}`;
}

/** The key of an unlock inside {@link EvalState.unlocked}. */
export function achievementKey(achievement: string, tier: string | null): string {
  return tier ? `${achievement}:${tier}` : achievement;
}

function lookup(ev: ValidEvent): (path: string) => unknown {
  return (path) => {
    const parts = path.split(".");
    let v: unknown = ev.event as unknown;
    for (const p of parts) {
      // Own properties only: `payload.constructor` must not find Object's.
      if (typeof v !== "object" || v === null || !Object.hasOwn(v, p)) return undefined;
      v = (v as Record<string, unknown>)[p];
    }
    return v;
  };
}

function applyCount(c: CompiledRule, prev: CountState | undefined, ev: ValidEvent): CountState {
  const ids = [...(prev?.ids ?? []), ev.event.event_id];
  const keep = Math.min(c.rule.target, TRIGGER_LIMIT);
  return { n: (prev?.n ?? 0) + 1, ids: ids.length > keep ? ids.slice(ids.length - keep) : ids };
}

/**
 * Applies one event to a user's state under a rule set.
 *
 * Pure: no clock, no I/O, no randomness; time comes only from the event. The
 * input state is not modified; unchanged parts are shared with the result.
 * Rules whose achievement is already unlocked stop changing, so a user's
 * state stops growing once the work is done.
 */
export function evaluate(state: EvalState, ev: ValidEvent, set: RuleSet): Evaluation {
  const candidates = set.byEventType.get(ev.event.event_type);
  if (!candidates) return { state, unlocks: [], changed: false };
  const get = lookup(ev);
  let rules = state.rules;
  let unlocked = state.unlocked;
  const unlocks: Unlock[] = [];
  for (const c of candidates) {
    const r = c.rule;
    const key = achievementKey(r.id, null);
    if (unlocked[key] || !c.matches(get)) continue;
    const next = applyCount(c, rules[r.id], ev);
    if (rules === state.rules) rules = { ...rules };
    rules[r.id] = next;
    if (next.n >= r.target) {
      const { tenant_id, user_id } = ev.event;
      const ref: UnlockRef = {
        unlock_id: unlockId(tenant_id, user_id, r.id, null, 1),
        rule_id: r.id,
        rule_version: r.version,
        tier: null,
        occurrence: 1,
        unlocked_at: new Date(ev.occurredAt).toISOString(),
        trigger_event_ids: next.ids,
      };
      if (unlocked === state.unlocked) unlocked = { ...unlocked };
      unlocked[key] = ref;
      unlocks.push({ ...ref, tenant_id, user_id, achievement_id: r.id, ...(r.title ? { title: r.title } : {}), ...(r.reward ? { reward: r.reward } : {}) });
    }
  }
  const changed = rules !== state.rules || unlocked !== state.unlocked;
  return { state: changed ? { rules, unlocked } : state, unlocks, changed };
}

/** Progress of one rule for the API. */
export type Progress = { achievement_id: string; rule_id: string; rule_version: number; title?: string; current: number; target: number };

/** Progress of every rule in `set` that is not yet unlocked (hidden ones omitted). */
export function progressOf(state: EvalState, set: RuleSet): Progress[] {
  const out: Progress[] = [];
  for (const { rule } of set.rules) {
    if (state.unlocked[achievementKey(rule.id, null)] || rule.hidden) continue;
    out.push({
      achievement_id: rule.id,
      rule_id: rule.id,
      rule_version: rule.version,
      ...(rule.title ? { title: rule.title } : {}),
      current: Math.min(state.rules[rule.id]?.n ?? 0, rule.target),
      target: rule.target,
    });
  }
  return out;
}

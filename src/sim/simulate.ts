import { validateEvent, type Rejection } from "../events/mod.ts";
import { applyEvents, chunksCovering } from "../pipeline/apply.ts";
import type { FingerprintSpec } from "../pipeline/fingerprint.ts";
import { unlockEvent } from "../pipeline/unlocks.ts";
import { progressOf, type Progress, type RuleBook, type Unlock } from "../rules/mod.ts";
import { emptyUserState, userKey, type UserState } from "../state/mod.ts";

/** What a simulation produced. */
export type Simulation = {
  /** Unlocks in the order they happened. */
  unlocks: Unlock[];
  /** Input lines that are not valid events, with the reason. */
  rejected: { index: number; rejection: Rejection }[];
  /** Events not applied again (same event_id). */
  duplicates: number;
  /** Final state per `tenant.user`. */
  states: Map<string, UserState>;
};

/**
 * Runs events through the same code the workers use (validation, event-id
 * dedup, the pure evaluator) without NATS: each user's events in the given
 * order, as if each had been published once in that order.
 */
export function simulate(events: readonly unknown[], book: RuleBook, recentIds = 1000, fingerprints: readonly FingerprintSpec[] = []): Simulation {
  const states = new Map<string, UserState>();
  // The seen-ids archive, in memory.
  const archive = new Map<string, string[]>();
  const out: Simulation = { unlocks: [], rejected: [], duplicates: 0, states };
  events.forEach((raw, index) => {
    const v = validateEvent(raw);
    if (!v.ok) {
      out.rejected.push({ index, rejection: v.rejection });
      return;
    }
    const e = v.value.event;
    const key = userKey(e.tenant_id, e.user_id);
    const state = states.get(key) ?? emptyUserState();
    const archived = new Set(chunksCovering(state, v.value.occurredAt).flatMap((c) => archive.get(`${key}.${c.phase}.${c.n}`) ?? []));
    const r = applyEvents(state, [{ seq: index + 1, ev: v.value }], book.forTenant(e.tenant_id), recentIds, "all", fingerprints, archived);
    for (const c of r.chunks) archive.set(`${key}.${c.phase}.${c.n}`, c.ids);
    out.duplicates += r.duplicates + r.fingerprinted;
    out.unlocks.push(...r.unlocks);
    states.set(key, { ...r.state, outbox: [] });
  });
  return out;
}

/** One user's achievements at `now`: unlocked keys and progress (what the API would show). */
export function userProgress(sim: Simulation, book: RuleBook, now: number): { tenant_id: string; user_id: string; unlocked: string[]; in_progress: Progress[] }[] {
  return [...sim.states].map(([key, state]) => {
    const [tenant_id, user_id] = key.split(".") as [string, string];
    const set = book.forTenant(tenant_id).at(now);
    return { tenant_id, user_id, unlocked: Object.keys(state.eval.unlocked).sort(), in_progress: progressOf(state.eval, set, now) };
  });
}

/** The fields of an unlock that a simulation can predict: the unlock event without its processing time. */
export function unlockLine(u: Unlock): Record<string, unknown> {
  const { processed_at: _p, ...rest } = unlockEvent(u, new Date(0));
  return rest;
}

/** The body of an unlock as published on `ach.unlocked.<tenant>.<user>`. Pure. */
import type { Unlock } from "../rules/mod.ts";

/** The unlock event published on `ach.unlocked.<tenant>.<user>` (design.md §3). */
export type UnlockEvent = {
  unlock_id: string;
  tenant_id: string;
  user_id: string;
  achievement_id: string;
  tier: string | null;
  rule_id: string;
  rule_version: number;
  occurrence: number;
  /** Repeatable rules: the period of this occurrence (`2026-04-13`, `2026-W16`, `2026-04`). */
  period?: string;
  unlocked_at: string;
  processed_at: string;
  trigger_event_ids: string[];
  title?: string;
  reward?: Record<string, unknown>;
  /** Recorded by a backfill (backdated): notifications leave it out unless asked for it. */
  backfill?: true;
};

/** Builds the published body of an unlock; `backfill` marks one a backfill records. */
export function unlockEvent(u: Unlock, processedAt: Date, backfill = false): UnlockEvent {
  return {
    unlock_id: u.unlock_id,
    tenant_id: u.tenant_id,
    user_id: u.user_id,
    achievement_id: u.achievement_id,
    tier: u.tier,
    rule_id: u.rule_id,
    rule_version: u.rule_version,
    occurrence: u.occurrence,
    ...(u.period ? { period: u.period } : {}),
    unlocked_at: u.unlocked_at,
    processed_at: processedAt.toISOString(),
    trigger_event_ids: u.trigger_event_ids,
    ...(u.title ? { title: u.title } : {}),
    ...(u.reward ? { reward: u.reward } : {}),
    ...(backfill ? { backfill: true as const } : {}),
  };
}

/**
 * The unlock in a published body, when it is one: a JSON object with a
 * string `unlock_id` (what a webhook signs with), `user_id` and
 * `achievement_id`; undefined for anything else (not JSON, `null`, an
 * array, a number, an object without those). The one check every reader
 * of `ACH_UNLOCKS` (SSE, webhooks) applies.
 */
export function unlockOf(body: string): UnlockEvent | undefined {
  let u: unknown;
  try {
    u = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof u !== "object" || u === null || Array.isArray(u)) return undefined;
  const o = u as Partial<Record<keyof UnlockEvent, unknown>>;
  return typeof o.unlock_id === "string" && typeof o.user_id === "string" && typeof o.achievement_id === "string" ? (u as UnlockEvent) : undefined;
}

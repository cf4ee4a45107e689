import type { PubAck } from "@nats-io/jetstream";
import { isCasFailure, type KvStore } from "../nats/mod.ts";
import { unlockedSubject } from "../events/mod.ts";
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
};

/** KV key of an unlock record: `<tenant>.<user>.<achievement>.<tier|_>.<occurrence>`. */
export function unlockRecordKey(u: Unlock): string {
  return `${u.tenant_id}.${u.user_id}.${u.achievement_id}.${u.tier ?? "_"}.${u.occurrence}`;
}

/** Builds the published body of an unlock. */
export function unlockEvent(u: Unlock, processedAt: Date): UnlockEvent {
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
  };
}

const enc = new TextEncoder();

/**
 * Publishes and records unlocks.
 *
 * Order matters: the event is published first (with `Nats-Msg-Id =
 * unlock_id`, so a republish inside the unlocks stream's duplicate window is
 * dropped), then the create-only record is written. A record therefore
 * proves that its event was published, which is what {@link recover} relies
 * on: after a crash, an outbox entry with a record is done, one without is
 * published again.
 */
export class UnlockSink {
  constructor(
    private readonly js: { publish(subject: string, data: Uint8Array, opts: { msgID: string }): Promise<PubAck> },
    private readonly records: KvStore,
  ) {}

  /** Publishes and records one unlock; true when the event was new to the stream. */
  async deliver(u: Unlock, now: Date = new Date()): Promise<boolean> {
    const body = enc.encode(JSON.stringify(unlockEvent(u, now)));
    const ack = await this.js.publish(unlockedSubject(u.tenant_id, u.user_id), body, { msgID: u.unlock_id });
    await this.records.create(unlockRecordKey(u), body).catch((err: unknown) => {
      if (!isCasFailure(err)) throw err;
    });
    return !ack.duplicate;
  }

  /** Delivers an outbox entry found in stored state unless its record shows it was delivered. */
  async recover(u: Unlock, now: Date = new Date()): Promise<boolean> {
    const e = await this.records.get(unlockRecordKey(u));
    if (e && e.operation === "PUT") return false;
    return this.deliver(u, now);
  }
}

import type { PubAck } from "@nats-io/jetstream";
import { isCasFailure, type KvStore } from "../nats/mod.ts";
import { unlockedSubject } from "../events/mod.ts";
import { unlockEvent, unlockRecordKey } from "../core/mod.ts";
import type { Unlock } from "../rules/mod.ts";
import type { Stats } from "../metrics/mod.ts";
import { crashPoint } from "../util/failpoint.ts";

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
 *
 * With `stats`, each delivery adds its two acknowledged writes to
 * `stats.unlockWrites` (the worker's sink); without (the history commands'
 * sinks, {@link deliverBackfilled} always), nothing is counted.
 */
export class UnlockSink {
  constructor(
    private readonly js: { publish(subject: string, data: Uint8Array, opts: { msgID: string }): Promise<PubAck> },
    private readonly records: KvStore,
    private readonly stats?: Pick<Stats, "unlockWrites">,
  ) {}

  /** Publishes and records one unlock; true when the event was new to the stream. */
  async deliver(u: Unlock, now: Date = new Date()): Promise<boolean> {
    const body = enc.encode(JSON.stringify(unlockEvent(u, now)));
    const ack = await this.js.publish(unlockedSubject(u.tenant_id, u.user_id), body, { msgID: u.unlock_id });
    crashPoint("unlock-published");
    await this.records.create(unlockRecordKey(u), body).catch((err: unknown) => {
      if (!isCasFailure(err)) throw err;
    });
    if (this.stats) this.stats.unlockWrites += 2;
    return !ack.duplicate;
  }

  /**
   * Publishes (unless `published`: the stream has it already) and records a
   * backfilled unlock, marked `backfill: true`, in the same order as
   * {@link deliver}; true when this call created the record (false: a
   * worker recorded it meanwhile, under the same message id).
   */
  async deliverBackfilled(u: Unlock, published: boolean, now: Date = new Date()): Promise<boolean> {
    const body = enc.encode(JSON.stringify(unlockEvent(u, now, true)));
    if (!published) await this.js.publish(unlockedSubject(u.tenant_id, u.user_id), body, { msgID: u.unlock_id });
    try {
      await this.records.create(unlockRecordKey(u), body);
      return true;
    } catch (err) {
      if (!isCasFailure(err)) throw err;
      return false;
    }
  }

  /** Delivers an outbox entry found in stored state unless its record shows it was delivered (then nothing is written or counted). */
  async recover(u: Unlock, now: Date = new Date()): Promise<boolean> {
    const e = await this.records.get(unlockRecordKey(u));
    if (e && e.operation === "PUT") return false;
    return this.deliver(u, now);
  }
}

import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { isCasFailure } from "../nats/mod.ts";
import { unlockSubject } from "../events/mod.ts";
import { unlockEvent } from "../core/mod.ts";
import type { Unlock } from "../rules/mod.ts";
import type { Stats } from "../metrics/mod.ts";
import { crashPoint } from "../util/failpoint.ts";

const enc = new TextEncoder();

/** Publishes to a stream with a message id and a compare-and-set on the subject's last sequence (the hot path's JsRequests is one). */
export type UnlockPublisher = { publish(subject: string, data: Uint8Array, opts: { msgID: string; lastSubjectSeq: number }): Promise<PubAck> };

/** nats.js's JetStream client as an {@link UnlockPublisher} (the history commands'). */
export function unlockPublisher(js: JetStreamClient): UnlockPublisher {
  return { publish: (subject, data, o) => js.publish(subject, data, { msgID: o.msgID, expect: { lastSubjectSequence: o.lastSubjectSeq } }) };
}

/**
 * Publishes unlocks, one write each.
 *
 * Each unlock is published on the subject that names it
 * (`ach.unlocked.<tenant>.<user>.<achievement>.<tier|_>.<occurrence>`,
 * {@link unlockSubject}) with `Nats-Expected-Last-Subject-Sequence: 0`: the
 * stream stores it only if that subject holds nothing yet, so the unlocks
 * stream is itself the create-only record of every unlock, forever, not
 * only inside a duplicate window. `Nats-Msg-Id = unlock_id` is set too:
 * inside the window a repeat is answered as a duplicate instead of refused.
 * Either way the unlock is not stored twice, and the call says it was not
 * new.
 *
 * With `stats`, each unlock stored adds one to `stats.unlockWrites` (the
 * worker's sink); the history commands' sinks count nothing.
 */
export class UnlockSink {
  constructor(
    private readonly js: UnlockPublisher,
    private readonly stats?: Pick<Stats, "unlockWrites">,
  ) {}

  /** Publishes `body` for `u` create-only; true when the stream stored it now. */
  async #publish(u: Unlock, body: Uint8Array): Promise<boolean> {
    try {
      const ack = await this.js.publish(unlockSubject(u), body, { msgID: u.unlock_id, lastSubjectSeq: 0 });
      return !ack.duplicate;
    } catch (err) {
      // The subject holds the unlock already (published before a crash, or by a backfill).
      if (isCasFailure(err)) return false;
      throw err;
    }
  }

  /** Publishes one unlock; true when it was new to the stream. */
  async deliver(u: Unlock, now: Date = new Date()): Promise<boolean> {
    const fresh = await this.#publish(u, enc.encode(JSON.stringify(unlockEvent(u, now))));
    crashPoint("unlock-published");
    if (fresh && this.stats) this.stats.unlockWrites++;
    return fresh;
  }

  /** Publishes a backfilled unlock, marked `backfill: true`; true when this call stored it (false: it was there, from a worker or an earlier run). */
  async deliverBackfilled(u: Unlock, now: Date = new Date()): Promise<boolean> {
    return this.#publish(u, enc.encode(JSON.stringify(unlockEvent(u, now, true))));
  }

  /** Delivers an outbox entry found in stored state: published unless the stream has it (then nothing is stored or counted). */
  async recover(u: Unlock, now: Date = new Date()): Promise<boolean> {
    return this.deliver(u, now);
  }
}

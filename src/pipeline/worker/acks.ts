import type { JsMsg } from "@nats-io/jetstream";
import type { WriteGate } from "./deps.ts";

/**
 * The partition's processed but unacknowledged messages, in stream order,
 * and the AckAll floor below the events still held in the reorder window.
 */
export class AckTracker {
  /** Processed messages not yet acknowledged (some of their events are held), in stream order. */
  readonly #unacked: JsMsg[] = [];

  constructor(private readonly gate: Pick<WriteGate, "mayAck">) {}

  /** Records a fully processed batch (in stream order, after what came before). */
  processed(batch: readonly JsMsg[]): void {
    this.#unacked.push(...batch);
  }

  /**
   * Acknowledges (AckAll) the highest processed message below `heldMinSeq`,
   * the stream sequence of the oldest event still held (undefined: none).
   *
   * In: the processed messages, the oldest held sequence.
   * Out: one ack, covering every processed message below the held one;
   * those leave the tracker.
   * Guarantee: nothing is acknowledged while the fence is closed, and no
   * message at or above a held event is (a crash loses no held event).
   */
  ackFloor(heldMinSeq: number | undefined): void {
    if (!this.gate.mayAck()) return;
    let ack: JsMsg | undefined;
    let i = 0;
    while (i < this.#unacked.length && (heldMinSeq === undefined || this.#unacked[i]!.seq < heldMinSeq)) ack = this.#unacked[i++];
    if (!ack) return;
    this.#unacked.splice(0, i);
    ack.ack();
  }

  /** The messages (of `batch` or still unacknowledged) with the given stream sequences, once each. */
  messagesOf(seqs: ReadonlySet<number>, batch: readonly JsMsg[]): JsMsg[] {
    const bySeq = new Map<number, JsMsg>();
    for (const m of [...this.#unacked, ...batch]) if (seqs.has(m.seq)) bySeq.set(m.seq, m);
    return [...bySeq.values()];
  }

  /** Forgets everything (a rewind: the messages come again from the ack floor). */
  clear(): void {
    this.#unacked.length = 0;
  }
}

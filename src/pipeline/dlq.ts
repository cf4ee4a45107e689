import { headers, type MsgHdrs } from "@nats-io/transport-node";
import type { JetStreamClient } from "@nats-io/jetstream";
import { dlqSubject, type Rejection } from "../events/mod.ts";
import type { Stats } from "../metrics/mod.ts";

/** Headers the DLQ adds to the original bytes. */
export const DlqHeaders = {
  Reason: "Ach-Reason",
  Error: "Ach-Error",
  Subject: "Ach-Subject",
  DeliveryCount: "Ach-Delivery-Count",
  StreamSeq: "Ach-Stream-Seq",
  MsgId: "Ach-Msg-Id",
  FailedAt: "Ach-Failed-At",
  Origin: "Ach-Origin",
  /** Set when the body was cut to {@link DEAD_LETTER_MAX_BYTES}: the original size in bytes. */
  Truncated: "Ach-Truncated",
} as const;

/**
 * The most of a body a dead letter keeps. A rejected event can be larger
 * than a NATS message may be (an HTTP body over the server's max_payload):
 * it is kept cut to this size, marked with `Ach-Truncated`, so the reason
 * and the start of the body are never lost with it.
 */
export const DEAD_LETTER_MAX_BYTES = 256 * 1024;

/** A message to dead-letter: its bytes, where it came from and why it failed. */
export type DeadLetter = {
  data: Uint8Array;
  /** The producer-facing subject (`ach.events.…`) it was or would be published on. */
  subject: string;
  tenant?: string;
  user?: string;
  headers?: MsgHdrs;
  rejection: Rejection;
  deliveryCount?: number;
  streamSeq?: number;
  origin: "worker" | "http";
};

/** A header value: one line of printable text (a CR or LF would end the header), at most `max` characters. */
function oneLine(s: string, max = 2000): string {
  const t = s.replace(/[\u0000-\u001f\u007f]+/g, " ");
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** A copy of the producer's own headers: without the server's (`Nats-*`) and the engine's (`Ach-*`). */
export function producerHeaders(from: MsgHdrs | undefined): MsgHdrs {
  const h = headers();
  for (const [k, vs] of from ?? []) {
    if (k.startsWith("Nats-") || k.startsWith("Ach-")) continue;
    for (const v of vs) h.append(k, v);
  }
  return h;
}

/**
 * Publishes dead letters on `ach.dlq.<tenant>.<user>`: the original bytes as
 * the body, the original headers, and the reason, subject, delivery count
 * and stream sequence as `Ach-*` headers, so that `achd dlq redrive` can
 * publish the event again exactly as the producer sent it.
 */
export class DeadLetters {
  constructor(
    private readonly js: JetStreamClient,
    /** Counts what was sent, by tenant, reason and origin. */
    private readonly stats?: Pick<Stats, "deadLetter">,
  ) {}

  async send(d: DeadLetter, now: Date = new Date()): Promise<number> {
    const h = producerHeaders(d.headers);
    const msgId = d.headers?.get("Nats-Msg-Id");
    if (msgId) h.set(DlqHeaders.MsgId, oneLine(msgId, 400));
    h.set(DlqHeaders.Reason, d.rejection.code);
    h.set(DlqHeaders.Error, oneLine(d.rejection.message) || d.rejection.code);
    h.set(DlqHeaders.Subject, oneLine(d.subject, 1024));
    h.set(DlqHeaders.FailedAt, now.toISOString());
    h.set(DlqHeaders.Origin, d.origin);
    if (d.deliveryCount !== undefined) h.set(DlqHeaders.DeliveryCount, String(d.deliveryCount));
    if (d.streamSeq !== undefined) h.set(DlqHeaders.StreamSeq, String(d.streamSeq));
    // A message dead-lettered twice (crash before its ack) is stored once.
    const opts = d.streamSeq !== undefined ? { headers: h, msgID: `dlq-${d.streamSeq}` } : { headers: h };
    let data = d.data;
    if (data.length > DEAD_LETTER_MAX_BYTES) {
      h.set(DlqHeaders.Truncated, String(data.length));
      data = data.subarray(0, DEAD_LETTER_MAX_BYTES);
    }
    const ack = await this.js.publish(dlqSubject(d.tenant, d.user), data, opts);
    if (!ack.duplicate) this.stats?.deadLetter(d.tenant, d.rejection.code, d.origin);
    return ack.seq;
  }
}

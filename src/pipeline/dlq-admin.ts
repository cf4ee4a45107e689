import type { MsgHdrs } from "@nats-io/transport-node";
import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type StoredMsg, type StreamState } from "@nats-io/jetstream";
import { DLQ_PREFIX, EVENT_TYPE, eventSubject, EVENTS_PREFIX, ID_TOKEN } from "../events/mod.ts";
import { readOrdered, Streams } from "../nats/mod.ts";
import { DlqHeaders, producerHeaders } from "./dlq.ts";

/** One dead letter, as listed by `achd dlq list` and `GET /v1/dlq`. */
export type DeadLetterSummary = {
  seq: number;
  subject: string;
  reason: string;
  error: string;
  origin: string;
  failed_at: string;
  delivery_count?: number;
  stream_seq?: number;
  event_id?: string;
  bytes: number;
};

/** A dead letter with its body and every header. */
export type DeadLetterDetail = DeadLetterSummary & { headers: Record<string, string[]>; body: string };

/** The dead letter does not exist (never did, or was redriven and removed). */
export class DeadLetterNotFoundError extends Error {
  override name = "DeadLetterNotFoundError";
}

/** A dead letter that cannot go back as it is (no subject to return to, or a truncated body): give a corrected body. */
export class RedriveError extends Error {
  override name = "RedriveError";
}

function summary(seq: number, h: MsgHdrs | undefined, data: Uint8Array): DeadLetterSummary {
  const get = (k: string) => h?.get(k) || undefined;
  const count = get(DlqHeaders.DeliveryCount);
  const sseq = get(DlqHeaders.StreamSeq);
  // The body's event_id when it has one; else the last part of the msg id (<tenant>:<user>:<event_id>).
  let eventId: string | undefined;
  try {
    const id = (JSON.parse(new TextDecoder().decode(data)) as { event_id?: unknown }).event_id;
    if (typeof id === "string") eventId = id;
  } catch {
    // Not JSON: that may be why it is here.
  }
  eventId ??= get(DlqHeaders.MsgId)?.split(":").slice(2).join(":") || get(DlqHeaders.MsgId);
  return {
    seq,
    subject: get(DlqHeaders.Subject) ?? "",
    reason: get(DlqHeaders.Reason) ?? "",
    error: get(DlqHeaders.Error) ?? "",
    origin: get(DlqHeaders.Origin) ?? "",
    failed_at: get(DlqHeaders.FailedAt) ?? "",
    ...(count ? { delivery_count: Number(count) } : {}),
    ...(sseq ? { stream_seq: Number(sseq) } : {}),
    ...(eventId ? { event_id: eventId } : {}),
    bytes: data.length,
  };
}

/** The most dead letters a reason-filtered listing reads (from its start), and {@link deadLetterCounts} counts (the newest). */
export const DLQ_SCAN_MAX = 100_000;

/** Bodies a reason-filtered listing fetches at once, after its headers-only pass picked them. */
const BODIES_AT_ONCE = 32;

/**
 * Lists dead letters, oldest first, optionally for one tenant and one reason,
 * from sequence `from`. The tenant is a subject filter (the server skips the
 * rest); the reason is a header, so a reason filter reads headers only until
 * it has `limit` letters of that reason, at most {@link DLQ_SCAN_MAX}, then
 * fetches just those letters' bodies (one removed meanwhile is left out).
 */
export async function listDeadLetters(js: JetStreamClient, opts: { tenant?: string; reason?: string; limit?: number; from?: number } = {}): Promise<DeadLetterSummary[]> {
  const limit = opts.limit ?? 100;
  const consumer = { filter_subjects: opts.tenant ? `${DLQ_PREFIX}.${opts.tenant}.>` : `${DLQ_PREFIX}.>`, ...(opts.from ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.from } : {}) };
  const out: DeadLetterSummary[] = [];
  if (!opts.reason) {
    await readOrdered(js, Streams.Dlq, consumer, limit, (m) => void out.push(summary(m.seq, m.headers, m.data)), { size: 1000, expires: 5000 });
    return out;
  }
  const seqs: number[] = [];
  await readOrdered(js, Streams.Dlq, { ...consumer, headers_only: true }, DLQ_SCAN_MAX, (m) => {
    if (m.headers?.get(DlqHeaders.Reason) === opts.reason) seqs.push(m.seq);
    return seqs.length < limit;
  }, { size: 10_000, expires: 5000 });
  if (seqs.length === 0) return out;
  const jsm = await js.jetstreamManager();
  for (let i = 0; i < seqs.length; i += BODIES_AT_ONCE) {
    const got = await Promise.all(seqs.slice(i, i + BODIES_AT_ONCE).map((seq) => jsm.streams.getMessage(Streams.Dlq, { seq })));
    for (const m of got) if (m) out.push(summary(m.seq, m.header, m.data));
  }
  return out;
}

/** How many dead letters there are, by reason and by tenant. */
export type DeadLetterCounts = { depth: number; by_reason: Record<string, number>; by_tenant: Record<string, number> };

/**
 * Counts the DLQ as of `state` (its stream info's state, which the caller
 * has read, e.g. to tell whether the last count still stands): `depth` is
 * every letter in the stream; `by_reason` (the
 * `Ach-Reason` header) and `by_tenant` (the subject's tenant token, `_` for
 * an invalid one) cover the newest {@link DLQ_SCAN_MAX} sequence numbers.
 * Reads headers only, so a letter costs its headers, not its body.
 */
export async function deadLetterCounts(js: JetStreamClient, state: Pick<StreamState, "messages" | "first_seq" | "last_seq">): Promise<DeadLetterCounts> {
  const counts: DeadLetterCounts = { depth: state.messages, by_reason: {}, by_tenant: {} };
  if (state.messages === 0) return counts;
  const start = Math.max(state.first_seq, state.last_seq - DLQ_SCAN_MAX + 1);
  await readOrdered(js, Streams.Dlq, { headers_only: true, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start }, DLQ_SCAN_MAX, (m) => {
    const reason = m.headers?.get(DlqHeaders.Reason) || "unknown";
    const tenant = m.subject.split(".")[2] ?? "_";
    counts.by_reason[reason] = (counts.by_reason[reason] ?? 0) + 1;
    counts.by_tenant[tenant] = (counts.by_tenant[tenant] ?? 0) + 1;
  }, { size: 10_000, expires: 2000 });
  return counts;
}

async function stored(jsm: JetStreamManager, seq: number): Promise<StoredMsg> {
  const m = await jsm.streams.getMessage(Streams.Dlq, { seq }).catch(() => null);
  if (!m) throw new DeadLetterNotFoundError(`no dead letter with sequence ${seq} in ${Streams.Dlq}`);
  return m;
}

/** One dead letter with its body and headers. */
export async function showDeadLetter(jsm: JetStreamManager, seq: number): Promise<DeadLetterDetail> {
  const m = await stored(jsm, seq);
  const hs: Record<string, string[]> = {};
  for (const [k, v] of m.header ?? []) hs[k] = v;
  return { ...summary(seq, m.header, m.data), headers: hs, body: new TextDecoder().decode(m.data) };
}

/** The event subject a (corrected) body belongs on, when its ids are valid. */
function subjectOf(body: Uint8Array): string | undefined {
  try {
    const e = JSON.parse(new TextDecoder().decode(body)) as Record<string, unknown>;
    const { tenant_id: t, user_id: u, event_type: ty } = e;
    if (typeof t === "string" && typeof u === "string" && typeof ty === "string" && ID_TOKEN.test(t) && ID_TOKEN.test(u) && EVENT_TYPE.test(ty)) {
      return eventSubject(t, u, ty);
    }
  } catch {
    // Not JSON: no subject.
  }
  return undefined;
}

/** The outcome of a redrive. */
export type Redriven = { seq: number; subject: string; stream_seq: number; duplicate: boolean };

/**
 * Publishes a dead letter again on its original `ach.events.…` subject (or
 * `body` instead of the stored bytes, to fix a payload), with its original
 * headers, then removes it from the DLQ. It goes through the whole pipeline
 * again, validation and the engine's own dedup included. No `Nats-Msg-Id` is
 * set: the original id is still in the events stream's duplicate window for
 * a while and would make the server drop the redrive.
 */
export async function redriveDeadLetter(js: JetStreamClient, jsm: JetStreamManager, seq: number, body?: Uint8Array): Promise<Redriven> {
  const m = await stored(jsm, seq);
  let subject = m.header?.get(DlqHeaders.Subject) ?? "";
  if (!subject.startsWith(`${EVENTS_PREFIX}.`) && body) subject = subjectOf(body) ?? subject;
  const truncated = m.header?.get(DlqHeaders.Truncated);
  if (truncated && !body) throw new RedriveError(`dead letter ${seq} keeps only the first ${m.data.length} of its ${truncated} bytes; redrive it with a corrected body`);
  if (!subject.startsWith(`${EVENTS_PREFIX}.`)) {
    throw new RedriveError(
      `dead letter ${seq} has no event subject to go back to (${subject || "none"}): its tenant or user id was not valid; redrive it with a corrected body`,
    );
  }
  const h = producerHeaders(m.header);
  h.set("Ach-Redriven-From", String(seq));
  const ack = await js.publish(subject, body ?? m.data, { headers: h });
  await jsm.streams.deleteMessage(Streams.Dlq, seq, false);
  return { seq, subject, stream_seq: ack.seq, duplicate: ack.duplicate };
}

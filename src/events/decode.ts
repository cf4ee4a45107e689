import type { z } from "zod";
import { EventSchema, type Event } from "./schema.ts";
import { eventMsgId, parsePartitionedSubject, partitionOf } from "./subjects.ts";

/** Why an event was refused; `code` is stable, `message` is for people. */
export const RejectCodes = {
  TooLarge: "too_large",
  BadJson: "bad_json",
  InvalidEvent: "invalid_event",
  SubjectMismatch: "subject_mismatch",
  BadSubject: "bad_subject",
  MsgIdMismatch: "msg_id_mismatch",
  /** Stored on a partition its tenant and user do not hash to: published straight to `ach.p.…`, past the mapping. */
  WrongPartition: "wrong_partition",
  /** The rule evaluator threw on this event (poison). */
  EvaluationFailed: "evaluation_failed",
  /** Committing the event's user failed again and again for a reason other than the connection (poison). */
  ProcessingFailed: "processing_failed",
} as const;
export type RejectCode = (typeof RejectCodes)[keyof typeof RejectCodes];

/** One problem with an event, at a field path. */
export type Issue = { path: string; message: string };

/** A refused event: a stable code, one line for people, and every issue found. */
export type Rejection = { code: RejectCode; message: string; issues: Issue[] };

/** A valid event with its time parsed to epoch milliseconds. */
export type ValidEvent = { event: Event; occurredAt: number };

export type DecodeResult = { ok: true; value: ValidEvent } | { ok: false; rejection: Rejection };

/** Turns zod issues into `path: message` pairs. */
export function zodIssues(error: z.ZodError): Issue[] {
  return error.issues.map((i) => ({ path: i.path.length ? i.path.join(".") : "(root)", message: i.message }));
}

function reject(code: RejectCode, issues: Issue[]): DecodeResult {
  const message = issues.map((i) => `${i.path}: ${i.message}`).join("; ");
  return { ok: false, rejection: { code, message, issues } };
}

/**
 * Validates an already-parsed body against the contract. Used by the HTTP
 * ingest before publishing and by {@link decodeMessage} in the worker.
 */
export function validateEvent(body: unknown): DecodeResult {
  const parsed = EventSchema.safeParse(body);
  if (!parsed.success) return reject(RejectCodes.InvalidEvent, zodIssues(parsed.error));
  const occurredAt = Date.parse(parsed.data.occurred_at);
  return { ok: true, value: { event: parsed.data, occurredAt } };
}

/** What {@link decodeMessage} checks a stored message against. */
export type DecodeOptions = {
  /** Largest accepted body, in bytes (`events.maxBytes`). */
  maxBytes: number;
  /** The partition count: a message must sit on the partition its tenant and user hash to. */
  partitions: number;
};

/**
 * Decodes a message taken from the events stream: size, partition, JSON,
 * schema, and the agreement of subject, body and `Nats-Msg-Id`. The subject
 * is the authority for tenant and user, which makes subject permissions a
 * security boundary; the partition check catches what permissions cannot
 * (a message published straight to `ach.p.<k>.…` by a client allowed to).
 */
export function decodeMessage(subject: string, data: Uint8Array, msgId: string | undefined, opts: DecodeOptions): DecodeResult {
  const { maxBytes } = opts;
  if (data.length > maxBytes) {
    return reject(RejectCodes.TooLarge, [{ path: "(body)", message: `event is ${data.length} bytes, the limit is ${maxBytes}` }]);
  }
  const where = parsePartitionedSubject(subject);
  if (!where) return reject(RejectCodes.BadSubject, [{ path: "(subject)", message: `unexpected subject ${subject}` }]);
  const home = partitionOf(where.tenant, where.user, opts.partitions);
  if (home !== where.partition) {
    return reject(RejectCodes.WrongPartition, [
      { path: "(subject)", message: `${where.tenant}/${where.user} belongs to partition ${home}, not ${where.partition}: publish on ach.events.…, never on ach.p.…` },
    ]);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.length).toString("utf8"));
  } catch (err) {
    return reject(RejectCodes.BadJson, [{ path: "(body)", message: `not JSON: ${(err as Error).message}` }]);
  }
  const res = validateEvent(body);
  if (!res.ok) return res;
  const e = res.value.event;
  const mismatches: Issue[] = [];
  if (e.tenant_id !== where.tenant) mismatches.push({ path: "tenant_id", message: `is ${e.tenant_id} but the subject says ${where.tenant}` });
  if (e.user_id !== where.user) mismatches.push({ path: "user_id", message: `is ${e.user_id} but the subject says ${where.user}` });
  if (e.event_type !== where.eventType) mismatches.push({ path: "event_type", message: `is ${e.event_type} but the subject says ${where.eventType}` });
  if (mismatches.length) return reject(RejectCodes.SubjectMismatch, mismatches);
  if (msgId !== undefined) {
    const want = eventMsgId(e.tenant_id, e.user_id, e.event_id);
    if (msgId !== want) {
      return reject(RejectCodes.MsgIdMismatch, [{ path: "(header) Nats-Msg-Id", message: `is ${JSON.stringify(msgId.slice(0, 300))} but must be ${want} (<tenant_id>:<user_id>:<event_id>)` }]);
    }
  }
  return res;
}

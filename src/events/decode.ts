import type { z } from "zod";
import { EventSchema, type Event } from "./schema.ts";
import { parsePartitionedSubject } from "./subjects.ts";

/** Why an event was refused; `code` is stable, `message` is for people. */
export const RejectCodes = {
  TooLarge: "too_large",
  BadJson: "bad_json",
  InvalidEvent: "invalid_event",
  SubjectMismatch: "subject_mismatch",
  BadSubject: "bad_subject",
  MsgIdMismatch: "msg_id_mismatch",
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

/**
 * Decodes a message taken from the events stream: size, JSON, schema, and the
 * agreement of subject, body and `Nats-Msg-Id`. The subject is the authority
 * for tenant and user, which makes subject permissions a security boundary.
 */
export function decodeMessage(subject: string, data: Uint8Array, msgId: string | undefined, maxBytes: number): DecodeResult {
  if (data.length > maxBytes) {
    return reject(RejectCodes.TooLarge, [{ path: "(body)", message: `event is ${data.length} bytes, the limit is ${maxBytes}` }]);
  }
  const where = parsePartitionedSubject(subject);
  if (!where) return reject(RejectCodes.BadSubject, [{ path: "(subject)", message: `unexpected subject ${subject}` }]);
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
  if (msgId !== undefined && msgId !== e.event_id) {
    return reject(RejectCodes.MsgIdMismatch, [{ path: "event_id", message: `is ${e.event_id} but the Nats-Msg-Id header is ${msgId}` }]);
  }
  return res;
}

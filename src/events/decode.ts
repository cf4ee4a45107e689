import type { z } from "zod";
import { DEFAULT_EVENT_LIMITS, horizonIssue, shapeIssue, type EventLimits, type Issue } from "./limits.ts";
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
  /** Nested deeper than the limit (an HTTP body, before it is parsed). */
  TooDeep: "too_deep",
  /** Stored on a partition its tenant and user do not hash to: published straight to `ach.p.…`, past the mapping. */
  WrongPartition: "wrong_partition",
  /** `occurred_at` is more than `limits.futureSkew` after the time the stream stored the event. */
  FutureEvent: "future_event",
  /** `payload` and `attributes` nest deeper than `limits.maxDepth` or hold more than `limits.maxKeys` keys and list items. */
  TooComplex: "too_complex",
  /** The rule evaluator threw on this event (poison). */
  EvaluationFailed: "evaluation_failed",
  /** Committing the event's user failed again and again for a reason other than the connection (poison). */
  ProcessingFailed: "processing_failed",
} as const;
export type RejectCode = (typeof RejectCodes)[keyof typeof RejectCodes];

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

/** What {@link validateEvent} checks besides the schema. */
export type ValidateOptions = {
  /** Shape and time bounds (the config's `limits`); missing fields take {@link DEFAULT_EVENT_LIMITS}. */
  limits?: Partial<EventLimits> | undefined;
  /**
   * When the event is (or is about to be) stored, epoch ms: `occurred_at`
   * may be at most `limits.futureSkew` after it. The worker and replay pass
   * the stream's timestamp of the message; HTTP ingest the clock at
   * publishing. Undefined: no horizon check (a tool with no stored time).
   */
  storedAt?: number | undefined;
};

/**
 * Validates an already-parsed body against the contract and the limits:
 * shape (depth, keys, `__proto__`) before the schema copies anything, then
 * the schema, then the time horizon. Used by the HTTP ingest before
 * publishing, by {@link decodeMessage} in the worker and replay, and by
 * the simulator.
 */
export function validateEvent(body: unknown, opts: ValidateOptions = {}): DecodeResult {
  const limits = { ...DEFAULT_EVENT_LIMITS, ...opts.limits };
  const shape = shapeIssue(body, limits);
  if (shape) return reject(shape.tooComplex ? RejectCodes.TooComplex : RejectCodes.InvalidEvent, [shape.issue]);
  const parsed = EventSchema.safeParse(body);
  if (!parsed.success) return reject(RejectCodes.InvalidEvent, zodIssues(parsed.error));
  const occurredAt = Date.parse(parsed.data.occurred_at);
  if (opts.storedAt !== undefined) {
    const late = horizonIssue(occurredAt, opts.storedAt, limits.futureSkew);
    if (late) return reject(RejectCodes.FutureEvent, [late]);
  }
  return { ok: true, value: { event: parsed.data, occurredAt } };
}

/** What {@link decodeMessage} checks a stored message against. */
export type DecodeOptions = ValidateOptions & {
  /** Largest accepted body, in bytes (`events.maxBytes`). */
  maxBytes: number;
  /** The partition count: a message must sit on the partition its tenant and user hash to. */
  partitions: number;
};

/**
 * Decodes a message taken from the events stream: size, partition, JSON,
 * shape and schema, the agreement of subject, body and `Nats-Msg-Id`, and
 * the time horizon against `opts.storedAt` (the message's stream time, so
 * the worker and a later replay decide alike). The subject is the authority
 * for tenant and user, which makes subject permissions a security boundary;
 * the partition check catches what permissions cannot (a message published
 * straight to `ach.p.<k>.…` by a client allowed to).
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
  // The horizon is checked last: a message on the wrong subject or with the wrong id says so first.
  const res = validateEvent(body, { limits: opts.limits });
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
  if (opts.storedAt !== undefined) {
    const late = horizonIssue(res.value.occurredAt, opts.storedAt, opts.limits?.futureSkew ?? DEFAULT_EVENT_LIMITS.futureSkew);
    if (late) return reject(RejectCodes.FutureEvent, [late]);
  }
  return res;
}

/**
 * What happened to a webhook's deliveries, in two streams: the dead-letter
 * list (`ACH_WEBHOOK_DLQ`, deliveries given up on, kept until redelivered
 * or a month old) and the delivery log (`ACH_WEBHOOK_LOG`, each attempt's
 * outcome, the newest `WEBHOOK_LOG_PER_WEBHOOK` per webhook). Streams rather than a KV bucket:
 * the sequence number is a stable handle for `…/dead/:seq/redeliver`,
 * listing is in order by subject filter, and the server bounds both by
 * itself (age, messages per subject) with nothing to clean up.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { isNotFound, readOrdered, Streams, WEBHOOK_DLQ_PREFIX, WEBHOOK_LOG_PER_WEBHOOK, WEBHOOK_LOG_PREFIX } from "../../nats/mod.ts";
import type { AttemptResult } from "./send.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A delivery given up on. */
export type WebhookDeadLetter = {
  webhook_id: string;
  tenant: string;
  unlock_id: string;
  user_id: string;
  achievement_id: string;
  /** Where the unlock is in `ACH_UNLOCKS`. */
  unlock_seq: number;
  attempts: number;
  last_status: number | null;
  last_error: string;
  first_attempt_at: string;
  failed_at: string;
  /** The unlock body exactly as published (what is signed and sent again on redelivery). */
  payload: string;
};

/** One attempt in the delivery log. */
export type WebhookLogEntry = {
  at: string;
  unlock_id: string;
  user_id: string;
  achievement_id: string;
  attempt: number;
  /** `delivered` (a 2xx), `retrying` (will try again), `dead_letter` (given up), `redelivered` (by hand, from the dead letters). */
  outcome: "delivered" | "retrying" | "dead_letter" | "redelivered" | "redelivery_failed";
  status: number | null;
  latency_ms: number;
  error?: string;
  /** The start of a failed answer's body (at most {@link LOGGED_RESPONSE_CHARS} characters), for whoever debugs the receiver. */
  response?: string;
};

/** No such dead letter for this webhook. */
export class WebhookDeadLetterNotFoundError extends Error {
  override name = "WebhookDeadLetterNotFoundError";
}

function dlqSubject(tenant: string, id: string): string {
  return `${WEBHOOK_DLQ_PREFIX}.${tenant}.${id}`;
}
function logSubject(tenant: string, id: string): string {
  return `${WEBHOOK_LOG_PREFIX}.${tenant}.${id}`;
}

/** Adds a dead letter; its msg id makes a repeat after a crash (before the unlock was acked) a duplicate. */
export async function addDeadLetter(js: JetStreamClient, d: WebhookDeadLetter): Promise<number> {
  const ack = await js.publish(dlqSubject(d.tenant, d.webhook_id), enc.encode(JSON.stringify(d)), { msgID: `${d.webhook_id}:${d.unlock_id}` });
  return ack.seq;
}

/** How much of a failed answer's body a log entry keeps. */
const LOGGED_RESPONSE_CHARS = 256;

/** The log entry of attempt `attempt` to deliver `unlock` that ended with `r`, recorded as `outcome` (now). */
export function logEntry(unlock: Pick<WebhookLogEntry, "unlock_id" | "user_id" | "achievement_id">, attempt: number, outcome: WebhookLogEntry["outcome"], r: AttemptResult): WebhookLogEntry {
  return {
    at: new Date().toISOString(),
    unlock_id: unlock.unlock_id,
    user_id: unlock.user_id,
    achievement_id: unlock.achievement_id,
    attempt,
    outcome,
    status: r.status ?? null,
    latency_ms: r.latencyMs,
    ...(r.error ? { error: r.error } : {}),
    ...(r.outcome !== "ok" && r.response ? { response: r.response.slice(0, LOGGED_RESPONSE_CHARS) } : {}),
  };
}

/** Appends an attempt to the webhook's delivery log. */
export async function logAttempt(js: JetStreamClient, tenant: string, id: string, e: WebhookLogEntry): Promise<void> {
  await js.publish(logSubject(tenant, id), enc.encode(JSON.stringify(e)));
}

/** Reads the messages of one subject of `stream` in order, from `from`, at most `limit`. */
async function readSubject<T>(js: JetStreamClient, stream: string, subject: string, limit: number, from?: number): Promise<{ seq: number; value: T }[]> {
  const out: { seq: number; value: T }[] = [];
  await readOrdered(js, stream, { filter_subjects: subject, ...(from ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from } : {}) }, limit, (m) => void out.push({ seq: m.seq, value: JSON.parse(dec.decode(m.data)) as T }));
  return out;
}

/** Dead letters on `subject` (one webhook's, a tenant's or all), oldest first, without their payloads, from sequence `from`. */
async function deadLettersOn(js: JetStreamClient, subject: string, opts: { limit?: number; from?: number }): Promise<(Omit<WebhookDeadLetter, "payload"> & { seq: number })[]> {
  const rows = await readSubject<WebhookDeadLetter>(js, Streams.WebhookDlq, subject, opts.limit ?? 100, opts.from);
  return rows.map(({ seq, value }) => {
    const { payload: _payload, ...rest } = value;
    return { seq, ...rest };
  });
}

/** A webhook's dead letters, oldest first (without their payloads), from sequence `from`. */
export function listDeadLetters(js: JetStreamClient, tenant: string, id: string, opts: { limit?: number; from?: number } = {}): Promise<(Omit<WebhookDeadLetter, "payload"> & { seq: number })[]> {
  return deadLettersOn(js, dlqSubject(tenant, id), opts);
}

/**
 * Every webhook's dead letters (of one tenant, or of all), oldest first,
 * without their payloads, from sequence `from`: the admin's view across
 * webhooks.
 */
export function listAllDeadLetters(js: JetStreamClient, opts: { tenant?: string; limit?: number; from?: number } = {}): Promise<(Omit<WebhookDeadLetter, "payload"> & { seq: number })[]> {
  return deadLettersOn(js, opts.tenant ? `${WEBHOOK_DLQ_PREFIX}.${opts.tenant}.*` : `${WEBHOOK_DLQ_PREFIX}.>`, opts);
}

/** Dead letter `seq` of webhook `id` of `tenant`; throws {@link WebhookDeadLetterNotFoundError} for any other. */
export async function getDeadLetter(jsm: JetStreamManager, tenant: string, id: string, seq: number): Promise<WebhookDeadLetter> {
  const m = await jsm.streams.getMessage(Streams.WebhookDlq, { seq }).catch((err: unknown) => {
    if (isNotFound(err)) return null;
    throw err;
  });
  // Another webhook's (or tenant's) letter is as absent as a missing one: a key of tenant A must not learn of B's.
  if (!m || m.subject !== dlqSubject(tenant, id)) throw new WebhookDeadLetterNotFoundError(`webhook ${id} has no dead letter ${seq}`);
  return JSON.parse(dec.decode(m.data)) as WebhookDeadLetter;
}

/** Removes dead letter `seq` (after a redelivery that worked). */
export async function removeDeadLetter(jsm: JetStreamManager, seq: number): Promise<void> {
  await jsm.streams.deleteMessage(Streams.WebhookDlq, seq, false).catch((err: unknown) => {
    if (!isNotFound(err)) throw err;
  });
}

/** The newest `limit` entries of a webhook's delivery log, newest first. */
export async function readLog(js: JetStreamClient, tenant: string, id: string, limit = WEBHOOK_LOG_PER_WEBHOOK): Promise<WebhookLogEntry[]> {
  // The log stream keeps the newest WEBHOOK_LOG_PER_WEBHOOK entries a subject: all of them are read.
  const rows = await readSubject<WebhookLogEntry>(js, Streams.WebhookLog, logSubject(tenant, id), WEBHOOK_LOG_PER_WEBHOOK);
  return rows
    .map((r) => r.value)
    .reverse()
    .slice(0, limit);
}

/** Drops every dead letter and log entry of a webhook (when it is removed). */
export async function purgeWebhook(jsm: JetStreamManager, tenant: string, id: string): Promise<void> {
  for (const [stream, subject] of [
    [Streams.WebhookDlq, dlqSubject(tenant, id)],
    [Streams.WebhookLog, logSubject(tenant, id)],
  ] as const) {
    await jsm.streams.purge(stream, { filter: subject }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }
}

/**
 * What NATS and JetStream failures mean to the engine, decided in one place
 * (in the manner of nats.js's `jserrors.ts`): the server's JetStream API
 * error codes the engine reacts to, and one predicate per question it asks
 * — did a compare-and-set lose ({@link isCasFailure}), is the thing not
 * there ({@link isNotFound}), is the message too large
 * ({@link isTooLarge}), will asking again help ({@link isTransient}), has
 * the server not answered yet ({@link isSlowAnswer}).
 *
 * Decisions are made on error classes and the server's numeric codes, never
 * on message text. Transient is an allow-list: a failure not on it (a
 * refusal that will never succeed, a corrupt value, a bug) is the work's
 * own, and becomes poison after its retries.
 */
import { errors } from "@nats-io/transport-node";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
// Not on the package's main entry; the same class nats.js throws (one copy of the module).
import { JetStreamStatusError } from "@nats-io/jetstream/internal";

/**
 * The JetStream API error codes (`err_code`, nats-server's
 * `server/errors.json`) the engine reacts to. nats.js's
 * `JetStreamApiCodes` names only six of them; the values here are the
 * server's.
 */
export const JsApiCodes = {
  /** 404 "consumer not found". */
  ConsumerNotFound: JetStreamApiCodes.ConsumerNotFound,
  /** 404 "stream not found". */
  StreamNotFound: JetStreamApiCodes.StreamNotFound,
  /** 404 "no message found". */
  NoMessageFound: JetStreamApiCodes.NoMessageFound,
  /** 400 "wrong last sequence: {seq}" (a compare-and-set, e.g. KV update, lost). */
  StreamWrongLastSequence: JetStreamApiCodes.StreamWrongLastSequence,
  /** 400 "wrong last sequence" (the same, without the sequence). */
  StreamWrongLastSequenceUnknown: JetStreamApiCodes.StreamWrongLastSequenceUnknown,
  /** 503 "JetStream not enabled for account": an answer about the account, not a passing state. */
  JetStreamNotEnabledForAccount: JetStreamApiCodes.JetStreamNotEnabledForAccount,
  /** 400 "message size exceeds maximum allowed" (the stream's `max_msg_size`). */
  StreamMessageExceedsMaximum: 10054,
  /** 400 "header size exceeds maximum allowed of 64k". */
  StreamHeaderExceedsMaximum: 10097,
  /** 503 "incomplete results": a peer did not answer in time. */
  ClusterIncomplete: 10004,
  /** 500 "JetStream cluster not assigned to this server": a restarted node not caught up with assignments. */
  ClusterNotAssigned: 10007,
  /** 503 "JetStream system temporarily unavailable": no meta leader (yet). */
  ClusterNotAvailable: 10008,
  /** 500 "JetStream cluster can not handle request": asked a node that is not (or no longer) the leader. */
  ClusterNotLeader: 10009,
  /** 503 "insufficient resources". */
  InsufficientResources: 10023,
  /** 500 "insufficient memory resources available". */
  MemoryResourcesExceeded: 10028,
  /** 500 raft errors (no quorum, proposal dropped while leadership moves). */
  RaftGeneral: 10041,
  /** 500 "insufficient storage resources available". */
  StorageResourcesExceeded: 10047,
  /** 503 "JetStream not enabled": the server's JetStream is not up (yet). */
  JetStreamNotEnabled: 10076,
  /** 503 a stream's store refused a write (closed while the server stops, limits with discard new). */
  StreamStoreFailed: 10077,
  /** 500 "stream is offline". */
  StreamOffline: 10118,
  /** 500 "consumer is offline". */
  ConsumerOffline: 10119,
  /** 409 "duplicate message id is in process": the first publish of this id is still being stored. */
  StreamDuplicateMessageConflict: 10158,
  /** 503 "expected last sequence per subject temporarily unavailable": a new stream leader still applying. */
  StreamExpectedLastSeqPerSubjectNotReady: 10163,
  /** 429 "too many requests". */
  StreamTooManyRequests: 10167,
} as const;
export type JsApiCode = (typeof JsApiCodes)[keyof typeof JsApiCodes];

/**
 * Server answers that say the cluster is settling, a node is restarting or
 * out of room for now — about the server, never about the request; each
 * clears without anything about the work changing.
 */
const TRANSIENT_CODES: ReadonlySet<number> = new Set<number>([
  JsApiCodes.ClusterIncomplete,
  JsApiCodes.ClusterNotAssigned,
  JsApiCodes.ClusterNotAvailable,
  JsApiCodes.ClusterNotLeader,
  JsApiCodes.RaftGeneral,
  JsApiCodes.StreamOffline,
  JsApiCodes.ConsumerOffline,
  JsApiCodes.JetStreamNotEnabled,
  JsApiCodes.StreamExpectedLastSeqPerSubjectNotReady,
  JsApiCodes.StreamDuplicateMessageConflict,
  JsApiCodes.StreamTooManyRequests,
  JsApiCodes.StreamStoreFailed,
  JsApiCodes.InsufficientResources,
  JsApiCodes.MemoryResourcesExceeded,
  JsApiCodes.StorageResourcesExceeded,
]);

/** Status codes of a JetStream status message (direct get, pull) that mean "not now": 503 no responders, 408 request timeout. */
const TRANSIENT_STATUS: ReadonlySet<number> = new Set([503, 408]);

/** A failure the thrower knows to be passing (the cluster is settling); always retried. */
export class TransientError extends Error {
  override name = "TransientError";
}

/** The error and its causes, outermost first (bounded, cycles cut). */
function chain(err: unknown): Error[] {
  const out: Error[] = [];
  for (let e = err; e instanceof Error && out.length < 8 && !out.includes(e); e = (e as { cause?: unknown }).cause) out.push(e);
  return out;
}

/** True when a compare-and-set write lost: the subject's last sequence (KV revision) was not the one expected, or a create-only key exists. */
export function isCasFailure(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === JsApiCodes.StreamWrongLastSequence || err.code === JsApiCodes.StreamWrongLastSequenceUnknown);
}

/** True when the stream, consumer or message asked for does not exist. */
export function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === JsApiCodes.StreamNotFound || err.code === JsApiCodes.ConsumerNotFound || err.code === JsApiCodes.NoMessageFound;
  return err instanceof JetStreamStatusError && err.code === 404;
}

/**
 * True when the message is larger than the stream (`max_msg_size`), the
 * headers limit or the server (`max_payload`, refused by the client before
 * sending) takes: the same message will be refused again.
 */
export function isTooLarge(err: unknown): boolean {
  return chain(err).some(
    (e) =>
      (e instanceof JetStreamApiError && (e.code === JsApiCodes.StreamMessageExceedsMaximum || e.code === JsApiCodes.StreamHeaderExceedsMaximum)) ||
      // nats-core's only signal is its InvalidArgumentError for the payload (`max_payload size exceeded`).
      (e instanceof errors.InvalidArgumentError && e.message.includes("max_payload")),
  );
}

/** One error (not its causes) on the allow-list. */
function transientItself(e: Error): boolean {
  if (e instanceof TransientError) return true;
  // The connection: no answer in time, nobody subscribed (JetStream starting), closed, draining, refused, reconnecting.
  if (e instanceof errors.TimeoutError || e instanceof errors.NoRespondersError) return true;
  if (e instanceof errors.ClosedConnectionError || e instanceof errors.DrainingConnectionError || e instanceof errors.ConnectionError) return true;
  // A request cut short by the connection ("connection closed", "connection disconnected", "cancelled"); with a cause, the cause decides.
  if (e instanceof errors.RequestError) return e.cause === undefined;
  if (e instanceof JetStreamApiError) return TRANSIENT_CODES.has(e.code);
  if (e instanceof JetStreamStatusError) return TRANSIENT_STATUS.has(e.code);
  return false;
}

/**
 * True for a failure that says nothing about the work itself — it is on
 * the allow-list: connection states (timeout, no responders, closed,
 * draining, disconnected), JetStream not answering or not up yet, and
 * server codes for a cluster that is electing or catching up, or out of
 * room for now ({@link JsApiCodes}), or a {@link TransientError}. A
 * wrapper is transient when its cause is. A message too large never is.
 * Everything else — a refusal that will never succeed, a compare-and-set
 * conflict (handled by the caller), a corrupt value, a bug — is not.
 */
export function isTransient(err: unknown): boolean {
  if (isTooLarge(err)) return false;
  // JetStreamNotEnabled is not on the list itself: it wraps either no responders (transient, by its cause) or the
  // account's own answer (10039: not).
  return chain(err).some(transientItself);
}

/**
 * True for a failure that says the server did not answer (yet): a request
 * timeout, no responders (JetStream still starting), JetStream temporarily
 * unavailable (no meta leader). Narrower than {@link isTransient}: a
 * refusal (an API error about the request, "insufficient resources", an
 * account without JetStream) is an answer, and start-up reports it at once.
 */
export function isSlowAnswer(err: unknown): boolean {
  return chain(err).some(
    (e) =>
      e instanceof errors.TimeoutError ||
      e instanceof errors.NoRespondersError ||
      (e instanceof JetStreamApiError && e.code === JsApiCodes.ClusterNotAvailable),
  );
}

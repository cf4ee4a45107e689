import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import { ConflictError } from "../state/mod.ts";

/** The worker is stopping; the work was abandoned and will be redelivered. */
export class StoppedError extends Error {
  override name = "StoppedError";
}

/**
 * Work that failed `attempts` times with errors that are not about the
 * connection (a state too large for KV, a corrupt value, a bug): retrying
 * will not help, so the events go to the DLQ with this history.
 */
export class PoisonError extends Error {
  override name = "PoisonError";
  constructor(readonly history: string[], opts?: ErrorOptions) {
    super(`failed ${history.length} times: ${history[history.length - 1] ?? ""}`, opts);
  }
}

/** A failure the thrower knows to be passing (the cluster is settling); always retried. */
export class TransientError extends Error {
  override name = "TransientError";
}

/** Hooks of {@link retrying}. */
export type RetryHooks = {
  isRunning(): boolean;
  maxBackoff: number;
  /** Failures not about the connection allowed before {@link PoisonError}. */
  maxAttempts: number;
  onConflict(): void;
  onRetry(err: unknown, attempt: number): void;
};

const TRANSIENT_NAMES = new Set(["TimeoutError", "ConnectionError", "ClosedConnectionError", "DrainingConnectionError", "NoRespondersError", "RequestError", "JetStreamNotEnabled"]);
const TRANSIENT_TEXT = /timeout|timed out|disconnect|connection|no responders|temporarily unavailable|leader|not enough resources|insufficient resources|stream not found|not enabled|503/i;
/** Server answers that are about the message itself: retrying cannot help. */
const POISON_TEXT = /max(imum)? payload|message size|exceeds the max/i;

/**
 * True for failures that say nothing about the work itself: the server is
 * unreachable, restarting, electing a leader, or answers with a JetStream
 * error (short of one about the message's size). Those are retried for as
 * long as it takes (the whole partition waits, in order). What is left —
 * a corrupt stored value, a bug — is the work's own failure.
 */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof TransientError) return true;
  if (POISON_TEXT.test(err.message)) return false;
  if (TRANSIENT_NAMES.has(err.name) || TRANSIENT_NAMES.has(err.constructor.name)) return true;
  // The server (or the client about the server) speaking: a node restarting says "jetstream is not enabled", and so on.
  if (err instanceof JetStreamError || err instanceof JetStreamApiError || err.name.startsWith("JetStream")) return true;
  const cause = (err as { cause?: unknown }).cause;
  if (cause && cause !== err && isTransient(cause)) return true;
  return TRANSIENT_TEXT.test(err.message);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` until it succeeds, in-process and in order (a `nak` with delay
 * would let later events of the same user overtake this one). A
 * compare-and-set conflict is retried at once (the caller reloads); a
 * transient error (see {@link isTransient}) is retried with capped
 * exponential backoff for as long as it lasts; any other error is retried
 * `maxAttempts` times, then thrown as {@link PoisonError}. Throws
 * {@link StoppedError} when the worker stops.
 */
export async function retrying<T>(fn: () => Promise<T>, hooks: RetryHooks): Promise<T> {
  const history: string[] = [];
  for (let attempt = 1; ; attempt++) {
    if (!hooks.isRunning()) throw new StoppedError("worker stopping");
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StoppedError) throw err;
      if (err instanceof ConflictError) {
        hooks.onConflict();
        if (attempt < 5) continue;
      } else {
        hooks.onRetry(err, attempt);
        if (!isTransient(err)) {
          history.push(`${new Date().toISOString()} ${(err as Error)?.name ?? "Error"}: ${(err as Error)?.message ?? String(err)}`);
          if (history.length >= hooks.maxAttempts) throw new PoisonError(history, { cause: err });
        }
      }
      await sleep(Math.min(hooks.maxBackoff, 25 * 2 ** Math.min(attempt, 10)));
    }
  }
}

import { isTransient, TransientError } from "../nats/mod.ts";
import { ConflictError } from "../state/mod.ts";
import { RETRY_BASE_MS } from "../config/mod.ts";
import { sleep } from "../util/lifecycle.ts";

// Which failures are passing is decided with every other error predicate, in nats/errors.ts.
export { isTransient, TransientError };

/** The worker is stopping; the work was abandoned and will be redelivered. */
export class StoppedError extends Error {
  override name = "StoppedError";
}

/**
 * Work that cannot be redone where it failed: a state deferred by the
 * write-behind buffer was overwritten by someone else (compare-and-set
 * failed) or cannot be written, and the events it holds are in earlier
 * steps. The partition starts over from its ack floor, which is before
 * them.
 */
export class RewindError extends Error {
  override name = "RewindError";
}

/**
 * Work that failed `attempts` times with errors not on the transient
 * allow-list (a state too large for KV, any other refusal by the server, a
 * corrupt value, a bug): retrying will not help, so the events go to the
 * DLQ with this history.
 */
export class PoisonError extends Error {
  override name = "PoisonError";
  constructor(readonly history: string[], opts?: ErrorOptions) {
    super(`failed ${history.length} times: ${history[history.length - 1] ?? ""}`, opts);
  }
}

/** Hooks of {@link retrying}. */
export type RetryHooks = {
  isRunning(): boolean;
  maxBackoff: number;
  /** First pause (doubling up to `maxBackoff`); default {@link RETRY_BASE_MS}. */
  baseBackoff?: number;
  /** Aborted when the worker stops: a pause ends at once, and {@link retrying} throws {@link StoppedError}. */
  signal?: AbortSignal;
  /** Failures not about the connection allowed before {@link PoisonError}. */
  maxAttempts: number;
  onConflict(): void;
  onRetry(err: unknown, attempt: number): void;
};


/**
 * Runs `fn` until it succeeds, in-process and in order (a `nak` with delay
 * would let later events of the same user overtake this one). A
 * compare-and-set conflict is retried at once (the caller reloads); a
 * transient error (see {@link isTransient}) is retried with capped
 * exponential backoff for as long as it lasts; any other error is retried
 * `maxAttempts` times, then thrown as {@link PoisonError}. Throws
 * {@link StoppedError} when the worker stops; {@link RewindError} passes
 * through at once.
 */
export async function retrying<T>(fn: () => Promise<T>, hooks: RetryHooks): Promise<T> {
  const history: string[] = [];
  for (let attempt = 1; ; attempt++) {
    if (!hooks.isRunning() || hooks.signal?.aborted) throw new StoppedError("worker stopping");
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StoppedError || err instanceof RewindError) throw err;
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
      if (!(await sleep(Math.min(hooks.maxBackoff, (hooks.baseBackoff ?? RETRY_BASE_MS) * 2 ** Math.min(attempt, 10)), hooks.signal))) throw new StoppedError("worker stopping");
    }
  }
}

import { ConflictError } from "../state/mod.ts";

/** The worker is stopping; the work was abandoned and will be redelivered. */
export class StoppedError extends Error {
  override name = "StoppedError";
}

/** Hooks of {@link retrying}. */
export type RetryHooks = {
  isRunning(): boolean;
  maxBackoff: number;
  onConflict(): void;
  onRetry(err: unknown, attempt: number): void;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `fn` until it succeeds, in-process and in order (a `nak` with delay
 * would let later events of the same user overtake this one). A
 * compare-and-set conflict is retried at once (the caller reloads); any
 * other error is taken as transient (NATS timeout, server restart) and
 * retried with capped exponential backoff. Poison is handled by the caller,
 * before it gets here. Throws {@link StoppedError} when the worker stops.
 */
export async function retrying<T>(fn: () => Promise<T>, hooks: RetryHooks): Promise<T> {
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
      }
      await sleep(Math.min(hooks.maxBackoff, 25 * 2 ** Math.min(attempt, 10)));
    }
  }
}

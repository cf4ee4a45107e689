/**
 * What every long-lived part shares for its lifecycle: waits that an
 * `AbortSignal` cuts short (on `node:timers/promises`, so an aborted wait
 * leaves no timer behind), and one rejection sink for work that runs in the
 * background, so no promise is left without an observer.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "./log.ts";

/** Where an engine is in its life; `failed` when start-up or stopping threw. */
export type EngineState = "starting" | "running" | "stopping" | "stopped" | "failed";

/**
 * Waits `ms`, or less when `signal` aborts first. Resolves true when the
 * whole time passed, false when the wait was cut short (also when `signal`
 * was aborted already); never rejects for the abort, and clears its timer
 * either way.
 */
export async function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return false;
  try {
    await delay(ms, undefined, signal ? { signal } : undefined);
    return true;
  } catch (err) {
    if (signal?.aborted) return false;
    throw err;
  }
}

/** Resolves once `signal` aborts (at once when it already has); never rejects. */
export function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/**
 * The rejection sink for a promise nobody awaits (a timer's callback, a
 * fire-and-forget step): a rejection is logged at error with `what`, the
 * error's stack and its causes (pino's `err` serializer appends each
 * `cause`'s message and stack), and never becomes an unhandled rejection,
 * which would end the process. Returns a promise that never rejects, for a
 * caller that wants to wait for it later (e.g. on stop).
 */
export function background(work: Promise<unknown>, log: Pick<Logger, "error">, what: string, fields: Record<string, unknown> = {}): Promise<void> {
  return work.then(
    () => undefined,
    (err: unknown) => {
      log.error({ ...fields, err: err instanceof Error ? err : new Error(String(err)) }, what);
    },
  );
}

/**
 * Waits for `work` for at most `ms` (the wait is cut short when `signal`
 * aborts). True when `work` settled in time; its rejection is not observed
 * here (the caller still holds it).
 */
export async function settlesWithin(work: Promise<unknown>, ms: number, signal?: AbortSignal): Promise<boolean> {
  const timer = new AbortController();
  const stop = signal ? AbortSignal.any([signal, timer.signal]) : timer.signal;
  let settled = false;
  const done = work.then(
    () => void (settled = true),
    () => void (settled = true),
  );
  try {
    await Promise.race([done, sleep(ms, stop)]);
  } finally {
    timer.abort();
  }
  return settled;
}

/**
 * `work`'s value if it resolves within `ms`; undefined if it fails or is late
 * (a scrape must not hang on NATS). A failure goes to `onError` (a debug log,
 * say), so an answer that never comes can be told from one that was slow;
 * a late failure is reported too.
 */
export async function answerWithin<T>(work: Promise<T>, ms: number, onError?: (err: unknown) => void): Promise<T | undefined> {
  const guarded = work.catch((err: unknown) => {
    onError?.(err);
    return undefined;
  });
  return (await settlesWithin(guarded, ms)) ? guarded : undefined;
}

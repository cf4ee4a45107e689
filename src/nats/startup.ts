/**
 * Start-up steps against a server that may be slow: a busy server (a large
 * backlog, a fleet starting together) or one still recovering its store
 * answers late or not at all for a while. Such a step is retried within a
 * bound, and running out of time is reported as a timeout — never as a
 * verdict on the server's configuration.
 */
import { STARTUP_WAIT_MS } from "../config/timings.ts";
import { sleep } from "../util/lifecycle.ts";
import type { Logger } from "../util/log.ts";
import { isSlowAnswer } from "./errors.ts";

/**
 * A start-up step got no conclusive answer within its bound: the server is
 * slow, busy or unreachable. Nothing is known to be wrong with its setup.
 */
export class StartupTimeoutError extends Error {
  override name = "StartupTimeoutError";
  constructor(
    /** What was being done ("creating streams", "checking the partition mapping"). */
    readonly step: string,
    /** How long it was tried, in ms. */
    readonly waitedMs: number,
    detail = "",
    opts?: ErrorOptions,
  ) {
    super(
      `${step}: no conclusive answer from NATS within ${(waitedMs / 1000).toFixed(1)} s — the server is busy or unreachable, nothing is known to be wrong with its configuration${detail ? ` (${detail})` : ""}. ` +
        "Start again once it answers",
      opts,
    );
  }
}

/**
 * Runs `fn` (which must be safe to repeat) until it succeeds; retries
 * {@link isSlowAnswer} failures with backoff for up to `timeoutMs` (one
 * attempt in flight may end a request timeout later), then throws
 * {@link StartupTimeoutError} with the last failure as its cause. Any other
 * failure is thrown at once.
 */
export async function whenAnswered<T>(step: string, fn: () => Promise<T>, opts: { timeoutMs?: number; log?: Logger } = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? STARTUP_WAIT_MS;
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isSlowAnswer(err)) throw err;
      const left = started + timeoutMs - Date.now();
      if (left <= 0) throw new StartupTimeoutError(step, Date.now() - started, `last: ${(err as Error).message}`, { cause: err });
      if (attempt === 1) opts.log?.warn({ step, err: (err as Error).message, bound_ms: timeoutMs }, "NATS is slow to answer at start-up; retrying");
      await sleep(Math.min(200 * 2 ** attempt, 2000, left));
    }
  }
}

/**
 * Crash points for the crash tests: `ACH_CRASH_AT=<point>:<n>` in a worker
 * process's environment makes the n-th pass through `point` kill the
 * process at once (SIGKILL: no handler, no flush, no ack), so a test can
 * stop a worker exactly between two writes. Without the variable a pass
 * costs one comparison. The points are listed in {@link CrashPoint}.
 */

/**
 * - `state-written`: a user's state (with any new unlocks in its outbox) was
 *   written in its step; nothing after it (unlock events, acks) yet.
 * - `unlock-published`: an unlock event is in the stream; its record is not.
 * - `deferred-written`: a deferred state was written by the write-behind
 *   flush; its events are not acknowledged yet.
 */
export type CrashPoint = "state-written" | "unlock-published" | "deferred-written";

const spec = /^([a-z-]+):(\d+)$/.exec(process.env.ACH_CRASH_AT ?? "");
const armed = spec ? { point: spec[1], left: Number(spec[2]) } : undefined;

/** Kills this process when `point` is the armed crash point and this is its n-th pass. */
export function crashPoint(point: CrashPoint): void {
  if (armed === undefined || armed.point !== point) return;
  if (--armed.left > 0) return;
  process.stderr.write(`ACH_CRASH_AT: killing the process at ${point}\n`);
  process.kill(process.pid, "SIGKILL");
}

/** Re-evaluating the stored events stream in memory (backfills, reconciliation, the replay benchmark). */
export { byTime, evalOptionsOf, Pace, reconcile, replayStream, type Replay, type ReplayOptions } from "./replay.ts";

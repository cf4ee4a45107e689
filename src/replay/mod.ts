/** Re-evaluating the stored events stream in memory (backfills, reconciliation, the replay benchmark). */
export { reconcile, replayStream } from "./replay.ts";

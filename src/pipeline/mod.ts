/** The worker pipeline: consume → validate → dedup → evaluate → commit → unlock → ack. */
export { Stats } from "./stats.ts";
export { DEAD_LETTER_MAX_BYTES, DeadLetters, DlqHeaders, type DeadLetter } from "./dlq.ts";
export { UnlockSink } from "./unlocks.ts";
export { StoppedError } from "./retry.ts";
export { PartitionWorker, type WorkerDeps } from "./partition.ts";
export { DeadLetterNotFoundError, listDeadLetters, RedriveError, redriveDeadLetter, showDeadLetter } from "./dlq-admin.ts";

/** The worker pipeline: consume → validate → dedup → evaluate → commit → unlock → ack. */
export { DEAD_LETTER_MAX_BYTES, DeadLetters, DlqHeaders, type DeadLetter } from "./dlq.ts";
export { UnlockSink, unlockPublisher, type UnlockPublisher } from "./unlocks.ts";
export { UnlockRecords } from "./unlock-records.ts";
export { StoppedError } from "./retry.ts";
export { PartitionWorker, type WorkerDeps } from "./partition.ts";
export { deadLetterCounts, DeadLetterNotFoundError, listDeadLetters, RedriveError, redriveDeadLetter, showDeadLetter, type DeadLetterCounts } from "./dlq-admin.ts";

/** The worker pipeline: consume → validate → dedup → evaluate → commit → unlock → ack. */
export * from "./stats.ts";
export * from "./dlq.ts";
export * from "./unlocks.ts";
export * from "./retry.ts";
export * from "./apply.ts";
export * from "./partition.ts";
export * from "./dlq-admin.ts";
export * from "./fingerprint.ts";

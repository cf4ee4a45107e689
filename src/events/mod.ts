/** The event contract: schema, subjects, partitioning, decoding. */
export { EVENT_ID, EVENT_TYPE, EventSchema, ID_TOKEN, type Event, type EventInput } from "./schema.ts";
export { DLQ_PREFIX, dlqSubject, eventMsgId, EVENTS_PREFIX, eventSubject, parsePartitionedSubject, PARTITIONED_PREFIX, partitionFilter, partitionMapping, partitionMappingBlock, partitionOf, parseUnlockedSubject, UNLOCKED_PREFIX, unlockedFilter, unlockSubject } from "./subjects.ts";
export { decodeMessage, RejectCodes, validateEvent, zodIssues, type DecodeOptions, type DecodeResult, type RejectCode, type Rejection, type ValidEvent } from "./decode.ts";
export { DEFAULT_EVENT_LIMITS, type EventLimits, type Issue } from "./limits.ts";
export { fieldAt, MAX_RULE_NUMBER, ruleValue } from "./fields.ts";

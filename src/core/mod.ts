/**
 * The pure evaluation path shared by the workers, the simulator, replay and
 * the API: a user's state and its bytes, applying events to it (dedup,
 * fingerprints, evaluation), the KV keys of per-user records and the
 * published unlock body. No I/O and no NATS anywhere under this folder
 * (test/unit/core-purity.test.ts checks it).
 */
export { applyEvents, chunksCovering, chunksToLoad, type Applied, type SeenChunk, type SeqEvent } from "./apply.ts";
export { fingerprintMatch, fingerprintOf, type FingerprintSpec } from "./fingerprint.ts";
export { seenChunkKey, unlockRecordKey, userKey } from "./keys.ts";
export { unlockEvent, unlockOf, type UnlockEvent } from "./unlock-event.ts";
export { decodeState, emptyUserState, encodeState, unlockedKey, withUnlock, type UserState } from "./user-state.ts";

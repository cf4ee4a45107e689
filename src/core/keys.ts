/**
 * The KV keys of the engine's per-user records, built in one place so the
 * worker, the API, replay and the simulator name a record the same way.
 * Tenant, user and achievement ids are subject-safe tokens. Pure.
 */
import type { Unlock } from "../rules/mod.ts";

/** KV key of a user's state (bucket `ach_state`): `<tenant>.<user>`. */
export function userKey(tenant: string, user: string): string {
  return `${tenant}.${user}`;
}

/** KV key of an archived chunk of seen event ids (bucket `ach_seen`): `<tenant>.<user>.<e|o>.<n>`. */
export function seenChunkKey(userKey: string, phase: "e" | "o", n: number): string {
  return `${userKey}.${phase}.${n}`;
}

/** Key of an unlock record: `<tenant>.<user>.<achievement>.<tier|_>.<occurrence>`, its subject in `ACH_UNLOCKS` after `ach.unlocked.`. */
export function unlockRecordKey(u: Unlock): string {
  return `${u.tenant_id}.${u.user_id}.${u.achievement_id}.${u.tier ?? "_"}.${u.occurrence}`;
}

/**
 * Subject names of the external contract (design.md §3) and the partition
 * function the server mapping uses, so that clients and tests can compute
 * the same partition the server does.
 */

export const EVENTS_PREFIX = "ach.events";
export const PARTITIONED_PREFIX = "ach.p";
export const UNLOCKED_PREFIX = "ach.unlocked";
export const DLQ_PREFIX = "ach.dlq";

/** `ach.events.<tenant>.<user>.<event.type…>` — where producers publish. */
export function eventSubject(tenant: string, user: string, eventType: string): string {
  return `${EVENTS_PREFIX}.${tenant}.${user}.${eventType}`;
}

/**
 * The `Nats-Msg-Id` of an event: `<tenant>:<user>:<event_id>`. JetStream's
 * duplicate window is stream-wide, so a bare `event_id` would let one user's
 * (or tenant's) event suppress another's that happens to share the id; scoped
 * to its user, an id only ever collides with a retry of the same event.
 * Tenant and user ids contain no `:`, so the three parts are unambiguous.
 */
export function eventMsgId(tenant: string, user: string, eventId: string): string {
  return `${tenant}:${user}:${eventId}`;
}

/**
 * `ach.unlocked.<tenant>.<user>.<achievement>.<tier|_>.<occurrence>` — the
 * subject of one unlock. It names the unlock, so the unlocks stream holds
 * at most one message per subject: published with
 * `Nats-Expected-Last-Subject-Sequence: 0`, the stream itself is the
 * create-only record of the unlock. Achievement ids and tier names are
 * subject-safe tokens (and never `_`); the occurrence is a number.
 */
export function unlockSubject(u: { tenant_id: string; user_id: string; achievement_id: string; tier: string | null; occurrence: number }): string {
  return `${UNLOCKED_PREFIX}.${u.tenant_id}.${u.user_id}.${u.achievement_id}.${u.tier ?? "_"}.${u.occurrence}`;
}

/** The subject filter of every unlock of a tenant (`*`: any) and user (`*`: any): `ach.unlocked.<tenant>.<user>.>`. */
export function unlockedFilter(tenant = "*", user = "*"): string {
  return `${UNLOCKED_PREFIX}.${tenant}.${user}.>`;
}

/**
 * The tenant and user of an unlock's subject (also the
 * `ach.unlocked.<tenant>.<user>` of unlocks published before subjects named
 * the unlock); undefined for any other subject.
 */
export function parseUnlockedSubject(subject: string): { tenant: string; user: string } | undefined {
  const parts = subject.split(".");
  return (parts.length === 4 || parts.length === 7) && `${parts[0]}.${parts[1]}` === UNLOCKED_PREFIX ? { tenant: parts[2]!, user: parts[3]! } : undefined;
}

/** `ach.dlq.<tenant>.<user>`; unknown or unsafe parts become `_`. */
export function dlqSubject(tenant?: string, user?: string): string {
  const safe = (t?: string) => (t && /^[A-Za-z0-9_-]+$/.test(t) ? t : "_");
  return `${DLQ_PREFIX}.${safe(tenant)}.${safe(user)}`;
}

/** The filter subject of partition `k`'s consumer. */
export function partitionFilter(k: number): string {
  return `${PARTITIONED_PREFIX}.${k}.>`;
}

/** The server-side mapping source and destination for P partitions. */
export function partitionMapping(partitions: number): { src: string; dest: string } {
  return {
    src: `${EVENTS_PREFIX}.*.*.>`,
    dest: `${PARTITIONED_PREFIX}.{{partition(${partitions},1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.>`,
  };
}

/** The `mappings { … }` block a server config needs for `partitions` (nats-server before 2.10). */
export function partitionMappingBlock(partitions: number): string {
  const m = partitionMapping(partitions);
  return `mappings {\n  "${m.src}": "${m.dest}"\n}`;
}

/**
 * FNV-1a 32-bit over the tenant and user tokens joined without a separator,
 * modulo P: the same function as the server's `{{partition(P,1,2)}}`.
 */
export function partitionOf(tenant: string, user: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(tenant + user, "utf8")) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % partitions;
}

/** Parts of a partitioned subject `ach.p.<k>.<tenant>.<user>.<type…>`. */
export type PartitionedSubject = { partition: number; tenant: string; user: string; eventType: string };

/** Parses a partitioned subject; `undefined` when it has not that shape. */
export function parsePartitionedSubject(subject: string): PartitionedSubject | undefined {
  const t = subject.split(".");
  if (t.length < 6 || t[0] !== "ach" || t[1] !== "p" || !/^\d+$/.test(t[2]!)) return undefined;
  if (t.slice(3).some((tok) => tok === "")) return undefined;
  const partition = Number(t[2]);
  return { partition, tenant: t[3]!, user: t[4]!, eventType: t.slice(5).join(".") };
}

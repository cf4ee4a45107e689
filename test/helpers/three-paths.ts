/**
 * One list of stored messages through the three evaluation paths that must
 * agree: the workers' (decode with the stream time, apply, and the state
 * stored as JSON between events, as the KV bucket stores it), replay's
 * Shard, and the simulator (given the same stored times).
 */
import { decodeMessage, eventMsgId, partitionOf, type EventLimits } from "../../src/events/mod.ts";
import { applyEvents, decodeState, emptyUserState, encodeState, userKey, type UserState } from "../../src/core/mod.ts";
import { Shard } from "../../src/replay/shard.ts";
import { progressOf, type Progress, type RuleBook, type Unlock } from "../../src/rules/mod.ts";
import { simulate } from "../../src/sim/mod.ts";

export const PARTITIONS = 4;
const enc = new TextEncoder();

/** A message as the events stream stores it. */
export type StoredMsg = { subject: string; msgId: string; data: Uint8Array; seq: number; storedAt: number; text: string };

/** Builds the stored message of an event body written as JSON text (so it may hold `1e400`), at stream time `storedAt`. */
export function stored(text: string, seq: number, storedAt: number): StoredMsg {
  // The routing fields are plain in every body these tests write.
  const field = (k: string) => new RegExp(`"${k}":"([^"]*)"`).exec(text)?.[1] ?? "x";
  const [t, u, type, id] = [field("tenant_id"), field("user_id"), field("event_type"), field("event_id")];
  return { subject: `ach.p.${partitionOf(t, u, PARTITIONS)}.${t}.${u}.${type}`, msgId: eventMsgId(t, u, id), data: enc.encode(text), seq, storedAt, text };
}

/** What one path gave. */
export type PathResult = { unlocks: Unlock[]; rejected: number; states?: Map<string, UserState> };

const MAX_BYTES = 65_536;

/** The workers' path (reorder window aside: every rule in arrival order), the state JSON-encoded after each event. */
export function enginePath(msgs: readonly StoredMsg[], book: RuleBook, limits: Partial<EventLimits> = {}): PathResult & { states: Map<string, UserState> } {
  const bytes = new Map<string, Uint8Array>();
  const unlocks: Unlock[] = [];
  let rejected = 0;
  for (const m of msgs) {
    const res = decodeMessage(m.subject, m.data, m.msgId, { maxBytes: MAX_BYTES, partitions: PARTITIONS, limits, storedAt: m.storedAt });
    if (!res.ok) {
      rejected++;
      continue;
    }
    const e = res.value.event;
    const key = userKey(e.tenant_id, e.user_id);
    const prev = bytes.has(key) ? decodeState(bytes.get(key)!) : emptyUserState();
    const r = applyEvents(prev, [{ seq: m.seq, ev: res.value }], book.forTenant(e.tenant_id), 64, "all");
    unlocks.push(...r.unlocks);
    if (r.dirty) bytes.set(key, encodeState({ ...r.state, outbox: [] }));
  }
  return { unlocks, rejected, states: new Map([...bytes].map(([k, b]) => [k, decodeState(b)])) };
}

/** Replay's path: a Shard fed the stored messages with their stream times. */
export function replayPath(msgs: readonly StoredMsg[], book: RuleBook, limits: Partial<EventLimits> = {}): PathResult {
  const shard = new Shard({ rules: book.all(), maxBytes: MAX_BYTES, partitions: PARTITIONS, limits, recentIds: 64, fingerprints: [] });
  for (const m of msgs) shard.add(m.subject, m.data, m.msgId, m.seq, m.storedAt);
  const r = shard.result();
  return { unlocks: r.unlocks, rejected: r.rejected };
}

/** The simulator's path: the bodies as a producer's file holds them, each stored at its message's time. */
export function simulatePath(msgs: readonly StoredMsg[], book: RuleBook, limits: Partial<EventLimits> = {}): PathResult & { states: Map<string, UserState> } {
  const sim = simulate(
    msgs.map((m) => JSON.parse(m.text) as unknown),
    book,
    64,
    [],
    { limits, storedAt: (i) => msgs[i]!.storedAt },
  );
  return { unlocks: sim.unlocks, rejected: sim.rejected.length, states: sim.states };
}

/** Progress of every user of a path, as the API would show it at `now`. */
export function progressByUser(states: Map<string, UserState>, book: RuleBook, now: number): Record<string, Progress[]> {
  const out: Record<string, Progress[]> = {};
  for (const [key, s] of [...states].sort(([a], [b]) => (a < b ? -1 : 1))) out[key] = progressOf(s.eval, book.forTenant(key.split(".")[0]!).at(now), now);
  return out;
}

import { LRUCache } from "lru-cache";
import type { SeqEvent } from "../core/mod.ts";

/** Bounds of a partition's reorder buffer. */
export type ReorderOptions = {
  /** How long (event time, and at most wall-clock time) an event may wait for earlier ones. */
  window: number;
  /** Most events buffered per user; beyond it the oldest is released early. */
  maxPerUser: number;
  /** Most events buffered per partition; beyond it the oldest are released early. */
  maxPerPartition: number;
  /** Told how long each released event was held (ms). */
  onRelease?: (heldMs: number) => void;
};

type Held = { item: SeqEvent; arrived: number };
type UserBuffer = { held: Held[] };

/** What adding an event did. */
export type AddResult = "buffered" | "duplicate" | "late";

function cmp(a: SeqEvent, b: SeqEvent): number {
  return a.ev.occurredAt - b.ev.occurredAt || a.seq - b.seq;
}

/**
 * The reorder window of one partition: holds events that order-sensitive
 * rules need, per user, and releases each user's events in event-time
 * order once they are safe to release:
 *
 * - the earliest held event (in event time) has waited `window` of
 *   wall-clock time since it arrived, or
 * - the user or the partition holds more than its bound (oldest first).
 *
 * So the promise is about arrival, whatever the pace: an event that arrives
 * less than `window` after a later event of its user is put before it. (An
 * earlier version also released events once the user's newest event was a
 * window later in event time; with three steps arriving in reverse one at a
 * time, that released the middle one on arrival and made the first late,
 * while the same steps in one batch unlocked: the outcome depended on how
 * batches formed.)
 *
 * An event that arrives after a later event of the same user was released
 * is late: it is not buffered (the ordered phase would skip it) and is
 * counted. Nothing here is acknowledged: the caller acks only below
 * {@link minSeq}. Time comes in as arguments; no clock is read here.
 */
export class ReorderBuffer {
  readonly #o: ReorderOptions;
  readonly #users = new Map<string, UserBuffer>();
  /**
   * Last released (event time, seq) of recently active users, to recognise
   * late events. Bounded per partition; for a user no longer here the
   * stored state's `ot` still makes the ordered phase skip a late event
   * (it is then counted as a duplicate, not as late).
   */
  readonly #released = new LRUCache<string, [number, number]>({ max: 10_000 });
  #size = 0;

  constructor(options: ReorderOptions) {
    this.#o = options;
  }

  get size(): number {
    return this.#size;
  }

  /** Buffers `item` for user `key`, unless it is a duplicate of a buffered event or late. */
  add(key: string, item: SeqEvent, now: number): AddResult {
    const rel = this.#released.get(key);
    if (rel && (item.ev.occurredAt < rel[0] || (item.ev.occurredAt === rel[0] && item.seq <= rel[1]))) {
      // Released already (a redelivery) or later than the window: the ordered phase has moved on.
      return item.seq <= rel[1] ? "duplicate" : "late";
    }
    let u = this.#users.get(key);
    if (!u) this.#users.set(key, (u = { held: [] }));
    const id = item.ev.event.event_id;
    if (u.held.some((h) => h.item.seq === item.seq || h.item.ev.event.event_id === id)) return "duplicate";
    let i = u.held.length;
    while (i > 0 && cmp(u.held[i - 1]!.item, item) > 0) i--;
    u.held.splice(i, 0, { item, arrived: now });
    this.#size++;
    return "buffered";
  }

  /** Removes and returns the events that are due at wall-clock `now`, per user, in event-time order. */
  due(now: number): Map<string, SeqEvent[]> {
    const out = new Map<string, SeqEvent[]>();
    const take = (key: string, u: UserBuffer) => {
      const h = u.held.shift()!;
      this.#o.onRelease?.(now - h.arrived);
      const list = out.get(key) ?? [];
      list.push(h.item);
      out.set(key, list);
      this.#released.set(key, [h.item.ev.occurredAt, h.item.seq]);
      this.#size--;
    };
    for (const [key, u] of this.#users) {
      while (u.held.length > 0) {
        const h = u.held[0]!;
        const ready = now - h.arrived >= this.#o.window || u.held.length > this.#o.maxPerUser;
        if (!ready) break;
        take(key, u);
      }
    }
    while (this.#size > this.#o.maxPerPartition) {
      let oldest: [string, UserBuffer] | undefined;
      for (const [key, u] of this.#users) {
        if (u.held.length && (!oldest || cmp(u.held[0]!.item, oldest[1].held[0]!.item) < 0)) oldest = [key, u];
      }
      take(oldest![0], oldest![1]);
    }
    for (const [key, u] of this.#users) if (u.held.length === 0) this.#users.delete(key);
    return out;
  }

  /** The smallest buffered stream sequence: everything below it may be acknowledged. */
  minSeq(): number | undefined {
    let min: number | undefined;
    for (const u of this.#users.values()) for (const h of u.held) if (min === undefined || h.item.seq < min) min = h.item.seq;
    return min;
  }

  /**
   * Milliseconds until the next event is due by wall-clock time (undefined
   * when empty). Only each user's earliest held event counts: the others
   * wait behind it, so waking for them would find nothing to release.
   */
  nextDue(now: number): number | undefined {
    let first: number | undefined;
    for (const u of this.#users.values()) {
      const h = u.held[0];
      if (h) first = first === undefined ? h.arrived : Math.min(first, h.arrived);
    }
    return first === undefined ? undefined : Math.max(0, first + this.#o.window - now);
  }

  /** Removes the held events of user `key` with the given stream sequences (they went to the DLQ). */
  drop(key: string, seqs: ReadonlySet<number>): void {
    const u = this.#users.get(key);
    if (!u) return;
    const before = u.held.length;
    u.held = u.held.filter((h) => !seqs.has(h.item.seq));
    this.#size -= before - u.held.length;
    if (u.held.length === 0) this.#users.delete(key);
  }

  /** Forgets everything buffered (after a rewind, the events come again). */
  clear(): void {
    this.#users.clear();
    this.#size = 0;
  }
}

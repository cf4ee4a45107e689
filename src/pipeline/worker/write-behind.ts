import type { UserState } from "../../core/mod.ts";
import type { Versioned } from "../../state/mod.ts";

/** A user's state applied in memory and not written yet. */
type Dirty = {
  state: UserState;
  /** The stored revision it was computed from: its write is a compare-and-set on this. */
  revision: number;
  /** Stream sequence of the oldest event applied to it since it was last written: nothing from here on may be acknowledged. */
  firstSeq: number;
  /** When it first became dirty (epoch ms): it is written by `since + delay` at the latest. */
  since: number;
};

/**
 * A partition's write-behind buffer: user states changed by the steps of
 * the last `delay` ms, kept in memory (as objects: a busy user is neither
 * decoded nor encoded between its events) and written once each, however
 * many steps changed them meanwhile.
 *
 * Acknowledgement follows durability: {@link minSeq} is the oldest event
 * whose effect is only here, and the partition acknowledges nothing at or
 * after it. A crash therefore loses only work whose events come again.
 * A user with new unlocks is never deferred (see `UserCommit`): its state,
 * with the unlocks in its outbox, is written before they are published.
 *
 * Bounded: at most `maxUsers` users; beyond, the oldest are written at the
 * end of the step. Pure bookkeeping: the writes are the partition's.
 */
export class WriteBehind {
  readonly #m = new Map<string, Dirty>();

  constructor(
    /** How long a change may wait for its write, ms (0: none waits). */
    readonly delay: number,
    readonly maxUsers: number,
  ) {}

  /** Users waiting for their write. */
  get size(): number {
    return this.#m.size;
  }

  /** True when changes wait at all (`delay` > 0). */
  get enabled(): boolean {
    return this.delay > 0 && this.maxUsers > 0;
  }

  /** The user's unwritten state with the revision it was computed from, if it has one. */
  get(key: string): Versioned | undefined {
    const d = this.#m.get(key);
    return d && { state: d.state, revision: d.revision };
  }

  /**
   * Keeps `state` as the user's newest, computed from stored `revision`;
   * `firstSeq` is the oldest stream sequence its events of this step have.
   * A user already waiting keeps its place, its oldest sequence and its
   * due time.
   */
  defer(key: string, state: UserState, revision: number, firstSeq: number, now: number): void {
    const d = this.#m.get(key);
    if (d) {
      d.state = state;
      d.firstSeq = Math.min(d.firstSeq, firstSeq);
      return;
    }
    this.#m.set(key, { state, revision, firstSeq, since: now });
  }

  /** Forgets the user's unwritten state (it was written, or must be computed again from what is stored). */
  drop(key: string): void {
    this.#m.delete(key);
  }

  /** Forgets every unwritten state (the partition starts again from its ack floor and stored states). */
  clear(): void {
    this.#m.clear();
  }

  /** Stream sequence of the oldest event whose effect is not written yet (undefined: none). */
  minSeq(): number | undefined {
    let min: number | undefined;
    for (const d of this.#m.values()) if (min === undefined || d.firstSeq < min) min = d.firstSeq;
    return min;
  }

  /** Milliseconds until the oldest waiting state is due (0: now; undefined: nothing waits). */
  nextDue(now: number): number | undefined {
    // Insertion order is the order users first became dirty: the first entry is due first.
    for (const d of this.#m.values()) return Math.max(0, d.since + this.delay - now);
    return undefined;
  }

  /** The users to write now, oldest first, with their states: those due by `now`, and the oldest beyond `maxUsers`. */
  due(now: number): { key: string; state: UserState; revision: number }[] {
    const out: { key: string; state: UserState; revision: number }[] = [];
    let over = this.#m.size - this.maxUsers;
    for (const [key, d] of this.#m) {
      if (over <= 0 && d.since + this.delay > now) break;
      out.push({ key, state: d.state, revision: d.revision });
      over--;
    }
    return out;
  }
}

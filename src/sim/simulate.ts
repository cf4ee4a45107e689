import { validateEvent, type EventLimits, type Rejection, type ValidEvent } from "../events/mod.ts";
import { progressOf, type Progress, type RuleBook, type Unlock } from "../rules/mod.ts";
import { applyEvents, chunksCovering, emptyUserState, seenChunkKey, unlockEvent, userKey, type FingerprintSpec, type SeenChunk, type UserState } from "../core/mod.ts";

/** What a simulation produced. */
export type Simulation = {
  /** Unlocks in the order they happened. */
  unlocks: Unlock[];
  /** Input lines that are not valid events, with the reason. */
  rejected: { index: number; rejection: Rejection }[];
  /** Events not applied again (same event_id). */
  duplicates: number;
  /** Final state per `tenant.user`. */
  states: Map<string, UserState>;
};

const NOTHING: ReadonlySet<string> = new Set();

/**
 * The workers' evaluation path in memory: each event applied to its user's
 * state as it comes (validation done by the caller, event-id dedup with an
 * in-memory seen-ids archive, the pure evaluator). The simulator and replay
 * feed it; both see each user's events in the order given.
 */
export class InMemoryEvaluator {
  readonly states = new Map<string, UserState>();
  readonly unlocks: Unlock[] = [];
  duplicates = 0;
  /** The seen-ids archive, in memory: each chunk by its KV key. */
  readonly #archive = new Map<string, SeenChunk>();

  constructor(
    private readonly book: RuleBook,
    private readonly recentIds = 1000,
    private readonly fingerprints: readonly FingerprintSpec[] = [],
  ) {}

  /** Applies one valid event; `seq` orders it (a stream sequence, or a position). */
  apply(ev: ValidEvent, seq: number): void {
    const e = ev.event;
    const key = userKey(e.tenant_id, e.user_id);
    const state = this.states.get(key) ?? emptyUserState();
    const archived = state.arch ? new Set(chunksCovering(state, ev.occurredAt).flatMap((c) => this.#archive.get(seenChunkKey(key, c.phase, c.n))?.ids ?? [])) : NOTHING;
    const r = applyEvents(state, [{ seq, ev }], this.book.forTenant(e.tenant_id), this.recentIds, "all", this.fingerprints, archived);
    for (const c of r.chunks) this.#archive.set(seenChunkKey(key, c.phase, c.n), c);
    this.duplicates += r.duplicates + r.fingerprinted;
    for (const u of r.unlocks) this.unlocks.push(u);
    this.states.set(key, r.state.outbox.length ? { ...r.state, outbox: [] } : r.state);
  }

  /** The archived id chunks of one user (`tenant.user`), as the seen-ids archive would hold them (a rebuild writes them). */
  chunksOf(key: string): SeenChunk[] {
    return [...this.#archive].filter(([k]) => k.startsWith(`${key}.`)).map(([, c]) => c);
  }
}

/** How a simulation checks events besides the schema. */
export type SimulateOptions = {
  /** The config's `limits` (default: their defaults). */
  limits?: Partial<EventLimits> | undefined;
  /**
   * When each event counts as stored, for the `occurred_at` horizon
   * (`limits.futureSkew`): one instant for every event, or one per input
   * position. Default: the clock when the simulation starts, i.e. as if
   * the events were published now — what the workers would decide for
   * them. Replay instead uses the time the stream really stored each one.
   */
  storedAt?: number | ((index: number) => number) | undefined;
  /** Told how many of the events are done, every 1,000 and at the end (for a progress bar). */
  onProgress?: ((done: number, total?: number) => void) | undefined;
};

/**
 * Runs events through the same code the workers use (validation with the
 * limits, event-id dedup, the pure evaluator) without NATS: each user's
 * events in the given order, as if each had been published once in that
 * order.
 */
export function simulate(events: readonly unknown[], book: RuleBook, recentIds = 1000, fingerprints: readonly FingerprintSpec[] = [], opts: SimulateOptions = {}): Simulation {
  const ev = new InMemoryEvaluator(book, recentIds, fingerprints);
  const rejected: Simulation["rejected"] = [];
  const at = opts.storedAt ?? Date.now();
  events.forEach((raw, index) => {
    const v = validateEvent(raw, { limits: opts.limits, storedAt: typeof at === "number" ? at : at(index) });
    if (v.ok) ev.apply(v.value, index + 1);
    else rejected.push({ index, rejection: v.rejection });
    if (opts.onProgress && (index + 1) % 1000 === 0) opts.onProgress(index + 1, events.length);
  });
  opts.onProgress?.(events.length, events.length);
  return { unlocks: ev.unlocks, rejected, duplicates: ev.duplicates, states: ev.states };
}

/** One user's achievements at `now`: unlocked keys and progress (what the API would show). */
export function userProgress(sim: Simulation, book: RuleBook, now: number): { tenant_id: string; user_id: string; unlocked: string[]; in_progress: Progress[] }[] {
  return [...sim.states].map(([key, state]) => {
    const [tenant_id, user_id] = key.split(".") as [string, string];
    const set = book.forTenant(tenant_id).at(now);
    return { tenant_id, user_id, unlocked: Object.keys(state.eval.unlocked).sort(), in_progress: progressOf(state.eval, set, now) };
  });
}

/** The fields of an unlock that a simulation can predict: the unlock event without its processing time. */
export function unlockLine(u: Unlock): Record<string, unknown> {
  const { processed_at: _p, ...rest } = unlockEvent(u, new Date(0));
  return rest;
}

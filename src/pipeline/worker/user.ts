import type { JsMsg } from "@nats-io/jetstream";
import { RejectCodes } from "../../events/mod.ts";
import { LRUCache } from "lru-cache";
import { ConflictError, type Versioned } from "../../state/mod.ts";
import { applyEvents, chunksToLoad, type Applied, type SeqEvent, type UserState } from "../../core/mod.ts";
import type { Unlock } from "../../rules/mod.ts";
import { PoisonError, RewindError, retrying, StoppedError, type RetryHooks } from "../retry.ts";
import { crashPoint } from "../../util/failpoint.ts";
import { deadLetterOf, type WorkerDeps, type WriteGate } from "./deps.ts";
import type { WriteBehind } from "./write-behind.ts";

/** A new event with the time its message was stored in the stream (epoch ms), which its unlocks' latency starts from. */
export type StampedEvent = SeqEvent & { storedAt: number };

/** When `item`'s message was stored (epoch ms): every event enters as a {@link StampedEvent}, and the reorder window hands back the same objects. */
function storedAtOf(item: SeqEvent): number | undefined {
  return "storedAt" in item && typeof item.storedAt === "number" ? item.storedAt : undefined;
}

/** One user's share of a step: new events (eager), released events (ordered), and the work in between. */
export type UserWork = {
  key: string;
  tenant: string;
  eager: StampedEvent[];
  msgs: JsMsg[];
  ordered: SeqEvent[];
  base?: Versioned;
  /** True when `base` is a state the write-behind buffer held (computed from events of earlier steps). */
  deferred?: boolean;
  after?: Applied;
};

/** What {@link UserCommit} needs: the stores and sinks (the unlock sink counts its writes), the fence, and where to find a message by sequence. */
export type UserCommitDeps = Pick<WorkerDeps, "store" | "seen" | "rules" | "unlocks" | "dlq" | "stats" | "config" | "io"> & {
  gate: Pick<WriteGate, "check">;
  /** The partition's write-behind buffer (absent: every changed state is written in its step). */
  wb?: WriteBehind;
  /** The messages (of `msgs` or still unacknowledged) with the given stream sequences. */
  messagesOf(seqs: ReadonlySet<number>, msgs: readonly JsMsg[]): JsMsg[];
};

/** Users whose deferred state could not be written: theirs is written in its step again, where a failure dead-letters the step's events. */
const WRITE_THROUGH_USERS = 1000;

/** One user's load, apply, save and unlock, in two halves around the reorder window; and the deferred writes. */
export class UserCommit {
  readonly #writeThrough = new LRUCache<string, true>({ max: WRITE_THROUGH_USERS });

  constructor(private readonly d: UserCommitDeps) {}

  /**
   * Stage 1 for one user: read state (cache or KV), deliver a leftover
   * outbox (entries without a record), apply the new events eagerly. Pure
   * after the read; nothing is written yet but the leftover unlocks.
   */
  async eager(u: UserWork): Promise<void> {
    const { store, stats, unlocks, gate } = this.d;
    const deferred = this.d.wb?.get(u.key);
    let { state, revision } = deferred ?? (await store.load(u.key));
    if (state.outbox.length > 0) {
      const now = new Date();
      gate.check();
      const fresh = await Promise.all(state.outbox.map((x) => unlocks.recover(x, now)));
      state.outbox.forEach((x, i) => fresh[i] && stats.unlock(x.tenant_id, x.achievement_id));
      state = { ...state, outbox: [] };
      store.outboxDelivered(u.key, revision);
    }
    // Events the recent id lists do not know but whose time falls in an archived chunk: read those chunks.
    const need = chunksToLoad(state, u.eager);
    const archived = need.length ? await this.d.seen.load(u.key, need) : new Set<string>();
    this.#applyEager(u, { state, revision }, deferred !== undefined, archived);
  }

  /**
   * Stage 1 without waiting, for a user whose state is in memory (deferred
   * or cached, with an empty outbox) and whose events need no archived id
   * chunk: the same result as {@link eager}, with none of its promises.
   * False (and nothing done) otherwise.
   */
  eagerInMemory(u: UserWork): boolean {
    const deferred = this.d.wb?.get(u.key);
    const held = deferred ?? this.d.store.peek(u.key);
    if (!held || held.state.outbox.length > 0 || chunksToLoad(held.state, u.eager).length > 0) return false;
    this.#applyEager(u, held, deferred !== undefined, new Set());
    return true;
  }

  #applyEager(u: UserWork, base: Versioned, deferred: boolean, archived: ReadonlySet<string>): void {
    const { stats, config } = this.d;
    const t0 = performance.now();
    u.after = applyEvents(base.state, u.eager, this.d.rules().forTenant(u.tenant), config.worker.recentIds, "eager", config.dedup.fingerprints, archived);
    stats.observe.evaluation((performance.now() - t0) / 1000, u.eager.length);
    u.base = base;
    u.deferred = deferred;
  }

  /**
   * Stage 2 without waiting, when it writes nothing now: no evaluation
   * failed, no id list is full, no unlock is new, and the changed state
   * can wait in the write-behind buffer. The same result as
   * {@link commit}; false (and nothing done) otherwise.
   */
  commitInMemory(u: UserWork): boolean {
    const { wb, config } = this.d;
    const r1 = u.after;
    if (!r1 || !u.base || !wb || r1.failed.length > 0 || r1.chunks.length > 0) return false;
    const t0 = performance.now();
    const r2 = u.ordered.length ? applyEvents(r1.state, u.ordered, this.d.rules().forTenant(u.tenant), config.worker.recentIds, "ordered") : undefined;
    if (r2 && (r2.failed.length > 0 || r2.chunks.length > 0)) return false;
    const state = r2?.state ?? r1.state;
    if (!this.#mayDefer(u.key, state)) return false;
    if (r2) this.d.stats.observe.evaluation((performance.now() - t0) / 1000, u.ordered.length);
    if (r1.dirty || r2?.dirty) wb.defer(u.key, state, u.base.revision, firstSeqOf(u), Date.now());
    this.#tally(u, r1, r2);
    return true;
  }

  /** Whether the user's changed `state` may wait in the write-behind buffer: buffering is on, no unlock waits for the state, and the user is not one whose deferred state failed. */
  #mayDefer(key: string, state: UserState): boolean {
    return this.d.wb?.enabled === true && state.outbox.length === 0 && !this.#writeThrough.has(key);
  }

  /** Adds a user's step to the tenant's counts. */
  #tally(u: UserWork, r1: Applied, r2: Applied | undefined): void {
    const t = this.d.stats.tenant(u.tenant);
    t.applied += r1.applied + (r2?.applied ?? 0);
    t.duplicates += r1.duplicates + (r2?.duplicates ?? 0);
    t.fingerprinted += r1.fingerprinted;
    t.unchanged += r1.unchanged + (r2?.unchanged ?? 0);
  }

  /**
   * Stage 2 for one user.
   *
   * In: the user's eager result (read again when missing) and its released
   * (ordered) events.
   * Out: one compare-and-set of the new state (with new unlocks in its
   * outbox), then the unlocks published and recorded; events whose
   * evaluation failed are dead-lettered.
   * Guarantee: on a compare-and-set conflict the whole user is recomputed
   * from a fresh read (held events are not added twice). A crash anywhere
   * leaves either the old state (the events come again and are applied
   * again) or the new state with its outbox (delivered when the
   * redelivered events load it).
   */
  async commit(u: UserWork): Promise<void> {
    const { store, stats, config, unlocks, dlq, gate } = this.d;
    if (!u.base) await this.eager(u);
    const rules = this.d.rules().forTenant(u.tenant);
    const r1 = u.after!;
    let { revision } = u.base!;
    const t0 = performance.now();
    const r2 = applyEvents(r1.state, u.ordered, rules, config.worker.recentIds, "ordered");
    if (u.ordered.length) stats.observe.evaluation((performance.now() - t0) / 1000, u.ordered.length);
    // A released (ordered) event may come from an earlier batch: look in everything not yet acknowledged.
    const failed = [...r1.failed, ...r2.failed];
    const msgs = failed.length ? new Map(this.d.messagesOf(new Set(failed.map((f) => f.item.seq)), u.msgs).map((m) => [m.seq, m])) : new Map<number, JsMsg>();
    for (const f of failed) {
      const m = msgs.get(f.item.seq);
      gate.check();
      if (m) await dlq.send(deadLetterOf(m, { code: RejectCodes.EvaluationFailed, message: `evaluation failed: ${f.error.message}`, issues: [] }));
    }
    let state = r2.state;
    // Archive full id lists before the state that refers to them.
    gate.check();
    await Promise.all([...r1.chunks, ...r2.chunks].map((c) => this.d.seen.write(u.key, c)));
    const wb = this.d.wb;
    if ((r1.dirty || r2.dirty) && wb && this.#mayDefer(u.key, state)) {
      // No unlock waits for this state: it is written later, once for all the steps that change it meanwhile.
      wb.defer(u.key, state, revision, firstSeqOf(u), Date.now());
    } else if (r1.dirty || r2.dirty) {
      try {
        gate.check();
        ({ state, revision } = await store.save(u.key, state, revision));
        stats.stateWrites++;
        wb?.drop(u.key);
        crashPoint("state-written");
      } catch (err) {
        u.base = undefined;
        // A deferred state holds events of earlier steps that this one cannot apply again: start over from the ack floor.
        if (u.deferred && err instanceof ConflictError) {
          wb?.drop(u.key);
          throw new RewindError(`state of ${u.key} changed under its deferred write`, { cause: err });
        }
        // Recompute from what is stored now; the retry loop calls us again.
        throw err;
      }
    }
    if (state.outbox.length > 0) {
      const now = new Date();
      gate.check();
      const fresh = await Promise.all(state.outbox.map((x) => unlocks.deliver(x, now)));
      this.#counted(u, state.outbox, fresh);
      store.outboxDelivered(u.key, revision);
    }
    this.#tally(u, r1, r2);
  }

  /**
   * Writes the deferred states that are due.
   *
   * In: the write-behind buffer. Out: each due state written with
   * compare-and-set on the revision it was computed from, and dropped from
   * the buffer.
   * Guarantee: a state that cannot be written (someone else wrote the user
   * meanwhile, or the server refuses it) is dropped and
   * {@link RewindError} is thrown once every write has settled: its events
   * come again from the ack floor and are applied to what is stored. A user
   * refused by the server is written in its steps from then on, so a state
   * that can never be written dead-letters its events instead of looping.
   */
  async flush(hooks: RetryHooks): Promise<void> {
    const { wb, store, gate, stats } = this.d;
    if (!wb?.size) return;
    const due = wb.due(Date.now());
    if (due.length === 0) return;
    const io = this.d.io ?? ((fn: () => Promise<void>) => fn());
    const write = async (d: (typeof due)[number]) => {
      gate.check();
      try {
        await store.save(d.key, d.state, d.revision);
      } catch (err) {
        if (err instanceof ConflictError) throw new RewindError(`state of ${d.key} changed under its deferred write`, { cause: err });
        throw err;
      }
      stats.stateWrites++;
      wb.drop(d.key);
      crashPoint("deferred-written");
    };
    const results = await Promise.allSettled(due.map((d) => io(() => retrying(() => write(d), hooks))));
    let rewind: RewindError | undefined;
    for (const [i, r] of results.entries()) {
      if (r.status === "fulfilled") continue;
      const err: unknown = r.reason;
      if (err instanceof StoppedError) throw err;
      if (!(err instanceof RewindError || err instanceof PoisonError)) throw err;
      const key = due[i]!.key;
      if (err instanceof RewindError) stats.conflicts++;
      else this.#writeThrough.set(key, true);
      wb.drop(key);
      rewind ??= err instanceof RewindError ? err : new RewindError(`the deferred state of ${key} cannot be written: ${err.message}`, { cause: err });
    }
    if (rewind) throw rewind;
  }

  /** Counts the unlocks published for the first time, with the time from their last trigger's arrival in the stream. */
  #counted(u: UserWork, outbox: readonly Unlock[], fresh: readonly boolean[]): void {
    const { stats } = this.d;
    if (!fresh.some(Boolean)) return;
    const storedAt = new Map<string, number | undefined>([...u.eager, ...u.ordered].map((i) => [i.ev.event.event_id, storedAtOf(i)]));
    const now = Date.now();
    outbox.forEach((x, i) => {
      if (!fresh[i]) return;
      stats.unlock(x.tenant_id, x.achievement_id);
      const at = storedAt.get(x.trigger_event_ids.at(-1) ?? "");
      if (at !== undefined) stats.observe.unlockLatency(Math.max(0, now - at) / 1000);
    });
  }
}

/** Stream sequence of the user's oldest event in this step. */
function firstSeqOf(u: UserWork): number {
  let min = Number.POSITIVE_INFINITY;
  for (const i of u.eager) if (i.seq < min) min = i.seq;
  for (const i of u.ordered) if (i.seq < min) min = i.seq;
  return min;
}

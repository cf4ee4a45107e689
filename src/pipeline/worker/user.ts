import type { JsMsg } from "@nats-io/jetstream";
import { RejectCodes } from "../../events/mod.ts";
import type { Versioned } from "../../state/mod.ts";
import { applyEvents, chunksToLoad, type Applied, type SeqEvent } from "../../core/mod.ts";
import type { Unlock } from "../../rules/mod.ts";
import { deadLetterOf, type WorkerDeps, type WriteGate } from "./deps.ts";

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
  after?: Applied;
};

/** What {@link UserCommit} needs: the stores and sinks (the unlock sink counts its writes), the fence, and where to find a message by sequence. */
export type UserCommitDeps = Pick<WorkerDeps, "store" | "seen" | "rules" | "unlocks" | "dlq" | "stats" | "config"> & {
  gate: Pick<WriteGate, "check">;
  /** The messages (of `msgs` or still unacknowledged) with the given stream sequences. */
  messagesOf(seqs: ReadonlySet<number>, msgs: readonly JsMsg[]): JsMsg[];
};

/** One user's load, apply, save and unlock, in two halves around the reorder window. */
export class UserCommit {
  constructor(private readonly d: UserCommitDeps) {}

  /**
   * Stage 1 for one user: read state (cache or KV), deliver a leftover
   * outbox (entries without a record), apply the new events eagerly. Pure
   * after the read; nothing is written yet but the leftover unlocks.
   */
  async eager(u: UserWork): Promise<void> {
    const { store, stats, config, unlocks, gate } = this.d;
    let { state, revision } = await store.load(u.key);
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
    const t0 = performance.now();
    const r = applyEvents(state, u.eager, this.d.rules().forTenant(u.tenant), config.worker.recentIds, "eager", config.dedup.fingerprints, archived);
    stats.observe.evaluation((performance.now() - t0) / 1000, u.eager.length);
    u.base = { state, revision };
    u.after = r;
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
    if (r1.dirty || r2.dirty) {
      try {
        gate.check();
        ({ state, revision } = await store.save(u.key, state, revision));
        stats.stateWrites++;
      } catch (err) {
        // Recompute from what is stored now; the retry loop calls us again.
        u.base = undefined;
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
    const t = stats.tenant(u.tenant);
    t.applied += r1.applied + r2.applied;
    t.duplicates += r1.duplicates + r2.duplicates;
    t.fingerprinted += r1.fingerprinted;
    t.unchanged += r1.unchanged + r2.unchanged;
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

import type { JsMsg } from "@nats-io/jetstream";
import { decodeMessage, RejectCodes } from "../../events/mod.ts";
import { isProbe } from "../../nats/mod.ts";
import { userKey } from "../../core/mod.ts";
import { UNKNOWN } from "../../metrics/mod.ts";
import type { Logger } from "../../util/log.ts";
import type { DeadLetter } from "../dlq.ts";
import type { ReorderBuffer } from "../reorder.ts";
import { PoisonError, retrying, type RetryHooks } from "../retry.ts";
import { deadLetterOf, type HooksFor, type WorkerDeps, type WriteGate } from "./deps.ts";
import type { UserCommit, UserWork } from "./user.ts";

/** What {@link BatchStep} needs: the sinks, the reorder window, one user's commit, and the fence. */
export type BatchStepDeps = Pick<WorkerDeps, "dlq" | "stats" | "config" | "io"> & {
  log: Logger;
  buffer: Pick<ReorderBuffer, "add" | "due" | "drop">;
  users: Pick<UserCommit, "eager" | "eagerInMemory" | "commit" | "commitInMemory">;
  gate: Pick<WriteGate, "check">;
  hooks: HooksFor;
  /** The messages (of `batch` or still unacknowledged) with the given stream sequences, once each. */
  messagesOf(seqs: ReadonlySet<number>, batch: readonly JsMsg[]): JsMsg[];
};

/**
 * One step of a partition: decode → eager stage → reorder window →
 * ordered stage → commit → dead letters.
 */
export class BatchStep {
  constructor(private readonly d: BatchStepDeps) {}

  /**
   * Runs one step on a batch (an empty batch only releases due events).
   *
   * In: a gap-free batch of deliveries, in stream order.
   * Out: invalid events dead-lettered; each touched user's new events
   * applied eagerly (every rule but sequences), the events sequences need
   * handed to the reorder window, what the window releases applied in
   * event-time order, each user committed once with its unlocks delivered;
   * a user that keeps failing has its events dead-lettered.
   * Guarantee: resolves only when every write of the step is done; throws
   * (StoppedError at the fence, or a failure retrying could not absorb)
   * only after every dead-letter send it started has settled, so none is
   * left unobserved.
   */
  async process(batch: JsMsg[]): Promise<void> {
    const { stats, config } = this.d;
    const users = new Map<string, UserWork>();
    const dead: DeadLetter[] = [];
    const work = (tenant: string, user: string) => {
      const key = userKey(tenant, user);
      let u = users.get(key);
      if (!u) users.set(key, (u = { key, tenant, eager: [], msgs: [], ordered: [] }));
      return u;
    };
    for (const m of batch) {
      if (isProbe(m.subject, m.headers)) continue;
      const storedAt = m.info.timestampNanos / 1e6;
      const res = decodeMessage(m.subject, m.data, m.headers?.get("Nats-Msg-Id") || undefined, { maxBytes: config.events.maxBytes, partitions: config.partitions, limits: config.limits, storedAt: Math.floor(storedAt) });
      if (!res.ok) {
        const d = deadLetterOf(m, res.rejection);
        stats.tenant(d.tenant ?? UNKNOWN).received++;
        dead.push(d);
        continue;
      }
      stats.tenant(res.value.event.tenant_id).received++;
      const u = work(res.value.event.tenant_id, res.value.event.user_id);
      // The stream time travels with the event (through the reorder window too): its unlocks' latency starts there.
      u.eager.push({ seq: m.seq, ev: res.value, storedAt });
      u.msgs.push(m);
    }
    const hooks = this.d.hooks(batch);
    const send = (d: DeadLetter) => {
      this.d.gate.check();
      return this.d.dlq.send(d);
    };
    // Observed from the start (allSettled), and awaited however the step ends: a send that fails after an
    // earlier stage threw must not become an unhandled rejection, which would end the process.
    const deadDone = Promise.allSettled(dead.map((d) => retrying(() => send(d), hooks)));
    try {
      await this.#stages(batch, users, work, hooks, send);
    } catch (err) {
      await deadDone;
      throw err;
    }
    rethrow(await deadDone);
  }

  /** Stage 1 (eager) and stage 2 (what the reorder window releases), then the poisoned users' dead letters. */
  async #stages(batch: JsMsg[], users: Map<string, UserWork>, work: (tenant: string, user: string) => UserWork, hooks: RetryHooks, send: (d: DeadLetter) => Promise<unknown>): Promise<void> {
    const { stats, buffer } = this.d;
    // A user whose work keeps failing for reasons other than the connection is poison: its events go to the DLQ.
    const poisoned = new Map<string, PoisonError>();
    const guard = (u: UserWork, fn: () => Promise<void>) =>
      retrying(fn, hooks).catch((err: unknown) => {
        if (!(err instanceof PoisonError)) throw err;
        poisoned.set(u.key, err);
      });
    // Stage 1: load and apply eagerly; collect what sequences need.
    const io = this.d.io ?? ((fn: () => Promise<void>) => fn());
    // Users whose state is in memory are applied at once; the others are read first (concurrently, bounded by io).
    const toRead = [...users.values()].filter((u) => !this.d.users.eagerInMemory(u));
    rethrow(await Promise.allSettled(toRead.map((u) => guard(u, () => io(() => this.d.users.eager(u))))));
    const now = Date.now();
    for (const u of users.values()) {
      if (poisoned.has(u.key)) continue;
      for (const item of u.after?.toOrder ?? []) {
        const r = buffer.add(u.key, item, now);
        if (r === "late") stats.tenant(u.tenant).late++;
      }
    }
    // Stage 2: what the reorder window releases, in event-time order per user.
    for (const items of buffer.due(now).values()) {
      const ev = items[0]!.ev.event;
      work(ev.tenant_id, ev.user_id).ordered.push(...items);
    }
    // Users with nothing to write now are done at once; the others commit concurrently.
    const todo = [...users.values()].filter((u) => !poisoned.has(u.key) && !this.d.users.commitInMemory(u));
    rethrow(await Promise.allSettled(todo.map((u) => guard(u, () => io(() => this.d.users.commit(u))))));
    for (const [key, err] of poisoned) await this.#deadUser(users.get(key)!, err, batch, hooks, send);
  }

  /** Sends every event of a poisoned user's step to the DLQ, with the failures that led there. */
  async #deadUser(u: UserWork, err: PoisonError, batch: JsMsg[], hooks: RetryHooks, send: (d: DeadLetter) => Promise<unknown>): Promise<void> {
    const seqs = new Set([...u.eager, ...u.ordered].map((i) => i.seq));
    this.d.buffer.drop(u.key, seqs);
    const msgs = this.d.messagesOf(seqs, batch);
    this.d.log.error({ user: u.key, events: msgs.length, history: err.history }, "user's events keep failing; sending them to the DLQ");
    for (const m of msgs) {
      await retrying(() => send(deadLetterOf(m, { code: RejectCodes.ProcessingFailed, message: err.history.join(" | "), issues: [] })), hooks);
    }
  }
}

function rethrow(results: PromiseSettledResult<unknown>[]): void {
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

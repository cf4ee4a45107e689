import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { LimitFunction } from "p-limit";
import type { Config } from "../config/mod.ts";
import { decodeMessage, eventSubject, parsePartitionedSubject, RejectCodes, type Rejection } from "../events/mod.ts";
import { parseConsumerName, partitionConsumer, partitionConsumerConfig, isProbe, pullAhead, Streams } from "../nats/mod.ts";
import type { RuleBook } from "../rules/mod.ts";
import { userKey, type SeenArchive, type StateStore, type Versioned } from "../state/mod.ts";
import type { Logger } from "../util/log.ts";
import { applyEvents, chunksToLoad, type Applied, type SeqEvent } from "./apply.ts";
import { ReorderBuffer } from "./reorder.ts";
import type { DeadLetter, DeadLetters } from "./dlq.ts";
import { PoisonError, retrying, StoppedError, TransientError, type RetryHooks } from "./retry.ts";
import type { Stats } from "./stats.ts";
import type { UnlockSink } from "./unlocks.ts";

/** What a partition worker needs from the process. */
export type WorkerDeps = {
  js: JetStreamClient;
  jsm: JetStreamManager;
  store: StateStore;
  seen: SeenArchive;
  rules: () => RuleBook;
  unlocks: UnlockSink;
  dlq: DeadLetters;
  stats: Stats;
  log: Logger;
  config: Config;
  /**
   * Whether this worker may still write for the partition (its lease was
   * renewed recently enough that nobody else can hold it). Checked before
   * every state write and every ack: a worker that lost its lease, even one
   * paused for a long time, writes nothing more.
   */
  fence?: () => boolean;
  /**
   * Shared by every partition of the process: bounds how many users are
   * read or written at once, so requests wait here rather than in the
   * server's queues, where a lease renewal would wait behind them.
   */
  io?: LimitFunction;
};


/**
 * Consumes one partition: pulls messages, applies each user's events in
 * stream order, commits state, records and publishes unlocks, then acks.
 *
 * Ordering: the worker only ever processes a gap-free run of deliveries. It
 * starts by recreating its consumer at the ack floor (so messages left
 * pending by a crash come back first and in order), and if a delivery is
 * ever missing (delivery sequence jumps) it rewinds the same way. So every
 * event is seen in stream order, and `seq <= state.seq` is an exact
 * "already applied" test.
 *
 * Acks: the consumer uses AckAll; after a batch is fully committed the
 * worker acks its last message, which acknowledges the whole batch.
 */
export class PartitionWorker {
  readonly #d: WorkerDeps;
  readonly #log: Logger;
  readonly #queue: JsMsg[] = [];
  #messages: ConsumerMessages | undefined;
  #wake: (() => void) | undefined;
  /** Wakes the pump when the queue has room again. */
  #space: (() => void) | undefined;
  #running = false;
  #loop: Promise<void> | undefined;
  #expect = 1;
  #gap = false;
  /** Bumped on every (re)open, so late callbacks of a closed consumer are ignored. */
  #generation = 0;
  /** Events held for order-sensitive rules. */
  readonly #buffer: ReorderBuffer;
  /** Processed messages not yet acknowledged (some of their events are held), in stream order. */
  readonly #unacked: JsMsg[] = [];
  /** When the last write or ack was let through the fence (0 before the first). */
  #lastWriteAt = 0;

  constructor(
    deps: WorkerDeps,
    readonly partition: number,
  ) {
    this.#d = deps;
    this.#log = deps.log.child({ partition });
    this.#buffer = new ReorderBuffer(deps.config.reorder);
  }

  /**
   * When this worker last let a write (state, seen ids, unlock, dead letter)
   * or an ack through its fence: after it, it issued nothing for the
   * partition. Compare-and-set on the state catches a write still in
   * flight.
   */
  get lastWriteAt(): number {
    return this.#lastWriteAt;
  }

  /** False once stopped (or once it stopped itself because its lease was not renewed in time). */
  get running(): boolean {
    return this.#running;
  }

  /** Starts consuming (after a rewind to the ack floor). */
  async start(): Promise<void> {
    this.#running = true;
    await this.#open();
    // Stopped while it opened (its lease was lost): let nothing run.
    if (!this.#running) return this.#closeConsumer();
    this.#loop = this.#supervise();
  }

  /**
   * Runs the loop; if it ever fails (a bug, or an error retrying could not
   * absorb), logs it and starts over from the ack floor a second later, so
   * one bad moment never stops the partition for good.
   */
  async #supervise(): Promise<void> {
    while (this.#running) {
      try {
        await this.#run();
        return;
      } catch (err) {
        if (err instanceof StoppedError || !this.#running) return;
        this.#log.error({ err }, "partition loop failed; restarting it from the ack floor");
        await new Promise((r) => setTimeout(r, 1000));
        if (!this.#running) return;
        try {
          await this.#rewind();
        } catch (e) {
          if (e instanceof StoppedError) return;
          this.#log.error({ err: e }, "rewind failed; trying again");
        }
      }
    }
  }

  /**
   * Stops pulling, finishes the batch in hand, acks it, and returns. Also
   * after the worker stopped itself (its fence closed): its consumer is
   * still open then and would keep pulling until closed here.
   */
  async stop(): Promise<void> {
    await this.#closeConsumer();
    this.#running = false;
    this.#wake?.();
    await this.#loop;
  }

  async #closeConsumer(): Promise<void> {
    const m = this.#messages;
    this.#messages = undefined;
    this.#generation++;
    this.#space?.();
    if (m) await m.close().catch(() => undefined);
  }

  /** Recreates the consumer at its ack floor (as a new generation) and starts pulling. */
  async #open(): Promise<void> {
    const { jsm, js, config } = this.#d;
    let info = await partitionConsumer(jsm, this.partition);
    if (!info) {
      // Gone (deleted by hand): start it again from the beginning; what was applied already is recognised by the users' states.
      this.#log.warn("consumer missing; creating it again");
      info = await jsm.consumers.add(Streams.Events, partitionConsumerConfig(config, this.partition));
    }
    const floor = info.ack_floor.stream_seq;
    if (info.num_ack_pending > 0 || info.num_redelivered > 0 || info.delivered.stream_seq > floor) {
      // Messages were delivered but not acknowledged (a crash, a gap, another owner): start over from the floor,
      // with a new consumer, so they come back first and in order and no late ack reaches the new one.
      // A consumer reads its leader's copy of the stream: do not place one while a copy is behind.
      const stream = await jsm.streams.info(Streams.Events);
      const lagging = stream.cluster?.replicas?.filter((r) => !r.current || r.offline) ?? [];
      if (lagging.length > 0) throw new TransientError(`partition ${this.partition}: events stream replicas ${lagging.map((r) => r.name).join(", ")} are catching up`);
      const generation = (parseConsumerName(info.name)?.generation ?? 0) + 1;
      const next = await jsm.consumers.add(Streams.Events, partitionConsumerConfig(config, this.partition, floor + 1, generation));
      // It must start right after the floor, or at the leader's first message when older ones have aged out.
      if (next.delivered.stream_seq !== Math.max(floor, stream.state.first_seq - 1)) {
        // Created on a replica that is still catching up (after a node restart), the consumer starts past messages
        // that are not there yet and would skip them. Drop it and try again once the replica has caught up.
        await jsm.consumers.delete(Streams.Events, next.name).catch(() => undefined);
        throw new TransientError(`partition ${this.partition}: new consumer starts after ${next.delivered.stream_seq}, not ${floor}; the stream is still catching up`);
      }
      await jsm.consumers.delete(Streams.Events, info.name).catch(() => undefined);
      info = next;
      this.#d.stats.rewinds++;
      this.#log.info({ from: floor + 1, consumer: next.name }, "rewound partition to its ack floor");
      this.#expect = 1;
    } else {
      this.#expect = info.delivered.consumer_seq + 1;
    }
    this.#gap = false;
    const gen = ++this.#generation;
    const consumer = await js.consumers.get(Streams.Events, info.name);
    const messages = await consumer.consume({ max_messages: pullAhead(config) });
    this.#messages = messages;
    void this.#pump(messages, gen);
  }

  /**
   * Moves messages from the consumer into the queue, and stops reading
   * while the queue holds two batches: the client then stops pulling, so a
   * slow partition keeps a bounded number of messages in memory and none
   * waits past the ack wait to be redelivered.
   */
  async #pump(messages: ConsumerMessages, gen: number): Promise<void> {
    const full = pullAhead(this.#d.config);
    try {
      for await (const m of messages) {
        if (gen !== this.#generation) break;
        this.#onMessage(m);
        while (this.#queue.length >= full && gen === this.#generation && this.#running) await new Promise<void>((r) => (this.#space = r));
      }
    } catch (err) {
      // The consumer failed (deleted, connection closed for good): the gap check or a rewind reopens it.
      if (gen === this.#generation && this.#running) {
        this.#log.warn({ err: String(err) }, "consumer stopped; rewinding");
        this.#gap = true;
        this.#wake?.();
      }
    }
  }

  #onMessage(m: JsMsg): void {
    if (this.#gap) return;
    const d = m.info.deliverySequence;
    if (d !== this.#expect) {
      this.#log.warn({ expected: this.#expect, got: d, seq: m.seq }, "delivery gap; rewinding");
      this.#gap = true;
    } else {
      this.#expect = d + 1;
      this.#queue.push(m);
    }
    this.#wake?.();
  }

  async #run(): Promise<void> {
    const { config } = this.#d;
    while (this.#running || this.#queue.length > 0) {
      if (this.#gap && this.#running) {
        await this.#rewind();
        continue;
      }
      if (this.#queue.length === 0) {
        if (!this.#running) break;
        // Idle: wait for messages, or until a held event is due.
        const due = this.#buffer.nextDue(Date.now());
        if (due !== 0) {
          await new Promise<void>((r) => {
            this.#wake = r;
            if (due !== undefined) setTimeout(r, due + 1);
          });
          this.#wake = undefined;
          if (this.#queue.length === 0 && this.#buffer.nextDue(Date.now()) !== 0) continue;
        }
      }
      const batch = this.#queue.splice(0, config.worker.batchSize);
      this.#space?.();
      if (batch.length && this.#log.isLevelEnabled("debug")) this.#log.debug({ first: batch[0]!.seq, last: batch[batch.length - 1]!.seq, n: batch.length, d0: batch[0]!.info.deliverySequence }, "batch");
      try {
        await this.#process(batch);
      } catch (err) {
        if (err instanceof StoppedError) break;
        throw err;
      }
      this.#unacked.push(...batch);
      this.#ackFloor();
    }
  }

  /**
   * Acknowledges (AckAll) the highest processed message below the oldest
   * event still held in the reorder window: everything up to it is applied.
   */
  #ackFloor(): void {
    if (this.#d.fence && !this.#d.fence()) return;
    this.#lastWriteAt = Date.now();
    const held = this.#buffer.minSeq();
    let ack: JsMsg | undefined;
    let i = 0;
    while (i < this.#unacked.length && (held === undefined || this.#unacked[i]!.seq < held)) ack = this.#unacked[i++];
    if (!ack) return;
    this.#unacked.splice(0, i);
    ack.ack();
  }

  /** Called right before every write: stops the work in hand when the lease may have passed to another worker. */
  #checkFence(): void {
    if (this.#d.fence && !this.#d.fence()) {
      this.#running = false;
      throw new StoppedError(`partition ${this.partition}: lease not renewed in time; not writing`);
    }
    this.#lastWriteAt = Date.now();
  }

  async #rewind(): Promise<void> {
    await this.#closeConsumer();
    this.#queue.length = 0;
    // Held and unacknowledged events come again from the ack floor.
    this.#buffer.clear();
    this.#unacked.length = 0;
    await retrying(() => this.#open(), this.#hooks([]));
  }

  #hooks(msgs: JsMsg[]) {
    return {
      isRunning: () => this.#running,
      maxBackoff: this.#d.config.worker.maxBackoff,
      maxAttempts: this.#d.config.worker.maxAttempts,
      onConflict: () => this.#d.stats.conflicts++,
      onRetry: (err: unknown, attempt: number) => {
        this.#d.stats.retries++;
        if (attempt === 1 || attempt % 10 === 0) this.#log.warn({ err: String(err), attempt }, "transient failure; retrying");
        for (const m of msgs) m.working();
      },
    };
  }

  /**
   * One step of the partition: validate the batch, apply each user's new
   * events eagerly (every rule but sequences), hand the events sequences
   * need to the reorder window, apply what the window releases (sequences,
   * in event-time order), then commit each touched user once and deliver
   * the unlocks. An empty batch only releases due events.
   */
  async #process(batch: JsMsg[]): Promise<void> {
    const { stats, config } = this.#d;
    const users = new Map<string, UserWork>();
    const dead: DeadLetter[] = [];
    const work = (tenant: string, user: string) => {
      const key = userKey(tenant, user);
      let u = users.get(key);
      if (!u) users.set(key, (u = { key, tenant, eager: [], msgs: [], ordered: [] }));
      return u;
    };
    for (const m of batch) {
      stats.received++;
      if (isProbe(m.subject, m.headers)) continue;
      const res = decodeMessage(m.subject, m.data, m.headers?.get("Nats-Msg-Id") || undefined, { maxBytes: config.events.maxBytes, partitions: config.partitions, limits: config.limits, storedAt: Math.floor(m.info.timestampNanos / 1e6) });
      if (!res.ok) {
        dead.push(this.#deadLetter(m, res.rejection));
        continue;
      }
      const u = work(res.value.event.tenant_id, res.value.event.user_id);
      u.eager.push({ seq: m.seq, ev: res.value });
      u.msgs.push(m);
    }
    const hooks = this.#hooks(batch);
    const send = (d: DeadLetter) => {
      this.#checkFence();
      return this.#d.dlq.send(d);
    };
    // Observed from the start (allSettled), and awaited however the step ends: a send that fails after an
    // earlier stage threw must not become an unhandled rejection, which would end the process.
    const deadDone = Promise.allSettled(dead.map((d) => retrying(() => send(d), hooks).then(() => stats.rejected++)));
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
    const { stats } = this.#d;
    // A user whose work keeps failing for reasons other than the connection is poison: its events go to the DLQ.
    const poisoned = new Map<string, PoisonError>();
    const guard = (u: UserWork, fn: () => Promise<void>) =>
      retrying(fn, hooks).catch((err: unknown) => {
        if (!(err instanceof PoisonError)) throw err;
        poisoned.set(u.key, err);
      });
    // Stage 1: load and apply eagerly; collect what sequences need.
    const io = this.#d.io ?? ((fn: () => Promise<void>) => fn());
    rethrow(await Promise.allSettled([...users.values()].map((u) => guard(u, () => io(() => this.#eager(u))))));
    const now = Date.now();
    for (const u of users.values()) {
      if (poisoned.has(u.key)) continue;
      for (const item of u.after?.toOrder ?? []) {
        const r = this.#buffer.add(u.key, item, now);
        if (r === "late") stats.late++;
      }
    }
    // Stage 2: what the reorder window releases, in event-time order per user.
    for (const items of this.#buffer.due(now).values()) {
      const ev = items[0]!.ev.event;
      work(ev.tenant_id, ev.user_id).ordered.push(...items);
    }
    const todo = [...users.values()].filter((u) => !poisoned.has(u.key));
    rethrow(await Promise.allSettled(todo.map((u) => guard(u, () => io(() => this.#commit(u))))));
    for (const [key, err] of poisoned) await this.#deadUser(users.get(key)!, err, batch, hooks, send);
  }

  /** The messages (of this batch or still unacknowledged) with the given stream sequences, once each. */
  #messagesOf(seqs: ReadonlySet<number>, batch: readonly JsMsg[]): JsMsg[] {
    const bySeq = new Map<number, JsMsg>();
    for (const m of [...this.#unacked, ...batch]) if (seqs.has(m.seq)) bySeq.set(m.seq, m);
    return [...bySeq.values()];
  }

  /** Sends every event of a poisoned user's step to the DLQ, with the failures that led there. */
  async #deadUser(u: UserWork, err: PoisonError, batch: JsMsg[], hooks: RetryHooks, send: (d: DeadLetter) => Promise<unknown>): Promise<void> {
    const { stats } = this.#d;
    const seqs = new Set([...u.eager, ...u.ordered].map((i) => i.seq));
    this.#buffer.drop(u.key, seqs);
    const msgs = this.#messagesOf(seqs, batch);
    this.#log.error({ user: u.key, events: msgs.length, history: err.history }, "user's events keep failing; sending them to the DLQ");
    for (const m of msgs) {
      await retrying(() => send(this.#deadLetter(m, { code: RejectCodes.ProcessingFailed, message: err.history.join(" | "), issues: [] })), hooks);
      stats.rejected++;
    }
  }

  #deadLetter(m: JsMsg, rejection: Rejection): DeadLetter {
    const where = parsePartitionedSubject(m.subject);
    return {
      data: m.data,
      subject: where ? eventSubject(where.tenant, where.user, where.eventType) : m.subject,
      ...(where ? { tenant: where.tenant, user: where.user } : {}),
      ...(m.headers ? { headers: m.headers } : {}),
      rejection,
      deliveryCount: m.info.deliveryCount,
      streamSeq: m.seq,
      origin: "worker",
    };
  }

  /**
   * Stage 1 for one user: read state (cache or KV), deliver a leftover
   * outbox (entries without a record), apply the new events eagerly. Pure
   * after the read; nothing is written yet.
   */
  async #eager(u: UserWork): Promise<void> {
    const { store, stats, config, unlocks } = this.#d;
    let { state, revision } = await store.load(u.key);
    if (state.outbox.length > 0) {
      const now = new Date();
      this.#checkFence();
      const fresh = await Promise.all(state.outbox.map((x) => unlocks.recover(x, now)));
      stats.unlocks += fresh.filter(Boolean).length;
      state = { ...state, outbox: [] };
      store.outboxDelivered(u.key, revision);
    }
    // Events the recent id lists do not know but whose time falls in an archived chunk: read those chunks.
    const need = chunksToLoad(state, u.eager);
    const archived = need.length ? await this.#d.seen.load(u.key, need) : new Set<string>();
    const r = applyEvents(state, u.eager, this.#d.rules().forTenant(u.tenant), config.worker.recentIds, "eager", config.dedup.fingerprints, archived);
    u.base = { state, revision };
    u.after = r;
  }

  /**
   * Stage 2 for one user: apply released events to sequences, then one
   * compare-and-set of the new state (with new unlocks in its outbox), then
   * publish and record the unlocks. On a compare-and-set conflict the whole
   * user is recomputed from a fresh read (held events are not added twice).
   * A crash anywhere leaves either the old state (the events come again and
   * are applied again) or the new state with its outbox (delivered when the
   * redelivered events load it).
   */
  async #commit(u: UserWork): Promise<void> {
    const { store, stats, config, unlocks, dlq } = this.#d;
    if (!u.base) await this.#eager(u);
    const rules = this.#d.rules().forTenant(u.tenant);
    const r1 = u.after!;
    let { revision } = u.base!;
    const r2 = applyEvents(r1.state, u.ordered, rules, config.worker.recentIds, "ordered");
    // A released (ordered) event may come from an earlier batch: look in everything not yet acknowledged.
    const failed = [...r1.failed, ...r2.failed];
    const msgs = failed.length ? new Map(this.#messagesOf(new Set(failed.map((f) => f.item.seq)), u.msgs).map((m) => [m.seq, m])) : new Map<number, JsMsg>();
    for (const f of failed) {
      const m = msgs.get(f.item.seq);
      this.#checkFence();
      if (m) await dlq.send(this.#deadLetter(m, { code: RejectCodes.EvaluationFailed, message: `evaluation failed: ${f.error.message}`, issues: [] }));
      stats.rejected++;
    }
    let state = r2.state;
    // Archive full id lists before the state that refers to them.
    this.#checkFence();
    await Promise.all([...r1.chunks, ...r2.chunks].map((c) => this.#d.seen.write(u.key, c)));
    if (r1.dirty || r2.dirty) {
      try {
        this.#checkFence();
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
      this.#checkFence();
      const fresh = await Promise.all(state.outbox.map((x) => unlocks.deliver(x, now)));
      stats.unlocks += fresh.filter(Boolean).length;
      store.outboxDelivered(u.key, revision);
    }
    stats.applied += r1.applied + r2.applied;
    stats.duplicates += r1.duplicates + r2.duplicates;
    stats.fingerprinted += r1.fingerprinted;
    stats.unchanged += r1.unchanged + r2.unchanged;
  }
}

/** One user's share of a step: new events (eager), released events (ordered), and the work in between. */
type UserWork = {
  key: string;
  tenant: string;
  eager: SeqEvent[];
  msgs: JsMsg[];
  ordered: SeqEvent[];
  base?: Versioned;
  after?: Applied;
};

function rethrow(results: PromiseSettledResult<unknown>[]): void {
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw (failed as PromiseRejectedResult).reason;
}

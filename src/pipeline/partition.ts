import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { Config } from "../config/mod.ts";
import { decodeMessage, eventSubject, parsePartitionedSubject, RejectCodes, type Rejection } from "../events/mod.ts";
import { consumerName, partitionConsumerConfig, PROBE_HEADER, Streams } from "../nats/mod.ts";
import type { RuleBook } from "../rules/mod.ts";
import { userKey, type StateStore } from "../state/mod.ts";
import type { Logger } from "../util/log.ts";
import { applyEvents, type SeqEvent } from "./apply.ts";
import type { DeadLetter, DeadLetters } from "./dlq.ts";
import { retrying, StoppedError } from "./retry.ts";
import type { Stats } from "./stats.ts";
import type { UnlockSink } from "./unlocks.ts";

/** What a partition worker needs from the process. */
export type WorkerDeps = {
  js: JetStreamClient;
  jsm: JetStreamManager;
  store: StateStore;
  rules: () => RuleBook;
  unlocks: UnlockSink;
  dlq: DeadLetters;
  stats: Stats;
  log: Logger;
  config: Config;
};

type UserBatch = { tenant: string; user: string; items: SeqEvent[]; msgs: JsMsg[] };

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
  #running = false;
  #loop: Promise<void> | undefined;
  #expect = 1;
  #gap = false;
  /** Bumped on every (re)open, so late callbacks of a closed consumer are ignored. */
  #generation = 0;
  /** Stream sequence of the last acknowledged message. */
  lastAcked = 0;

  constructor(
    deps: WorkerDeps,
    readonly partition: number,
  ) {
    this.#d = deps;
    this.#log = deps.log.child({ partition });
  }

  /** Starts consuming (after a rewind to the ack floor). */
  async start(): Promise<void> {
    this.#running = true;
    await this.#open();
    this.#loop = this.#run().catch((err: unknown) => {
      this.#log.error({ err }, "partition loop failed");
    });
  }

  /** Stops pulling, finishes the batch in hand, acks it, and returns. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    await this.#closeConsumer();
    this.#running = false;
    this.#wake?.();
    await this.#loop;
  }

  async #closeConsumer(): Promise<void> {
    const m = this.#messages;
    this.#messages = undefined;
    this.#generation++;
    if (m) await m.close().catch(() => undefined);
  }

  /** Recreates the consumer at its ack floor and starts pulling. */
  async #open(): Promise<void> {
    const { jsm, js, config } = this.#d;
    const name = consumerName(this.partition);
    const info = await jsm.consumers.info(Streams.Events, name);
    const floor = info.ack_floor.stream_seq;
    if (info.num_ack_pending > 0 || info.num_redelivered > 0 || info.delivered.stream_seq > floor) {
      // Messages were delivered but not acknowledged (a crash, or a gap):
      // start over from the floor so they come back first, in order.
      await jsm.consumers.delete(Streams.Events, name);
      await jsm.consumers.add(Streams.Events, partitionConsumerConfig(config, this.partition, floor + 1));
      this.#d.stats.rewinds++;
      this.#log.info({ from: floor + 1, pending: info.num_ack_pending }, "rewound partition to its ack floor");
      this.#expect = 1;
    } else {
      this.#expect = info.delivered.consumer_seq + 1;
    }
    this.#gap = false;
    const gen = ++this.#generation;
    const consumer = await js.consumers.get(Streams.Events, name);
    this.#messages = await consumer.consume({
      max_messages: Math.max(config.worker.batchSize * 2, 100),
      callback: (m) => {
        if (gen === this.#generation) this.#onMessage(m);
      },
    });
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
        await new Promise<void>((r) => (this.#wake = r));
        this.#wake = undefined;
        continue;
      }
      const batch = this.#queue.splice(0, config.worker.batchSize);
      try {
        await this.#process(batch);
      } catch (err) {
        if (err instanceof StoppedError) break;
        throw err;
      }
      const last = batch[batch.length - 1]!;
      last.ack();
      this.lastAcked = last.seq;
    }
  }

  async #rewind(): Promise<void> {
    await this.#closeConsumer();
    this.#queue.length = 0;
    await retrying(() => this.#open(), this.#hooks([]));
  }

  #hooks(msgs: JsMsg[]) {
    return {
      isRunning: () => this.#running,
      maxBackoff: this.#d.config.worker.maxBackoff,
      onConflict: () => this.#d.stats.conflicts++,
      onRetry: (err: unknown, attempt: number) => {
        this.#d.stats.retries++;
        if (attempt === 1 || attempt % 10 === 0) this.#log.warn({ err: String(err), attempt }, "transient failure; retrying");
        for (const m of msgs) m.working();
      },
    };
  }

  /** Validates, groups by user, applies, commits, delivers unlocks. */
  async #process(batch: JsMsg[]): Promise<void> {
    const { stats, config } = this.#d;
    const users = new Map<string, UserBatch>();
    const dead: DeadLetter[] = [];
    for (const m of batch) {
      stats.received++;
      if (m.headers?.get(PROBE_HEADER)) continue;
      const res = decodeMessage(m.subject, m.data, m.headers?.get("Nats-Msg-Id") || undefined, config.events.maxBytes);
      if (!res.ok) {
        dead.push(this.#deadLetter(m, res.rejection));
        continue;
      }
      const { tenant_id, user_id } = res.value.event;
      const key = userKey(tenant_id, user_id);
      let u = users.get(key);
      if (!u) users.set(key, (u = { tenant: tenant_id, user: user_id, items: [], msgs: [] }));
      u.items.push({ seq: m.seq, ev: res.value });
      u.msgs.push(m);
    }
    const jobs: Promise<unknown>[] = dead.map((d) => retrying(() => this.#d.dlq.send(d), this.#hooks(batch)).then(() => stats.rejected++));
    for (const u of users.values()) jobs.push(retrying(() => this.#applyUser(u), this.#hooks(batch)));
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
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
   * One user's part of a batch. Atomic step: read state (cache or KV) →
   * deliver a leftover outbox (entries without a record) → apply →
   * compare-and-set (new unlocks in the outbox) → publish and record them.
   * A crash anywhere leaves either the old state (the events are redelivered
   * and applied again) or the new state with its outbox (delivered when the
   * redelivered events load it). Delivered entries stay in the stored outbox
   * until the user's next write; the cache knows they are done.
   */
  async #applyUser(u: UserBatch): Promise<void> {
    const { store, stats, config, unlocks, dlq } = this.#d;
    const key = userKey(u.tenant, u.user);
    let { state, revision } = await store.load(key);
    if (state.outbox.length > 0) {
      const now = new Date();
      const fresh = await Promise.all(state.outbox.map((x) => unlocks.recover(x, now)));
      stats.unlocks += fresh.filter(Boolean).length;
      state = { ...state, outbox: [] };
      store.remember(key, { state, revision });
    }
    const set = this.#d.rules().forTenant(u.tenant);
    const r = applyEvents(state, u.items, set, config.worker.recentIds);
    for (const f of r.failed) {
      const m = u.msgs[u.items.indexOf(f.item)]!;
      await dlq.send(this.#deadLetter(m, { code: RejectCodes.EvaluationFailed, message: `evaluation failed: ${f.error.message}`, issues: [] }));
      stats.rejected++;
    }
    if (r.dirty) ({ state, revision } = await store.save(key, r.state, revision));
    if (state.outbox.length > 0) {
      const now = new Date();
      const fresh = await Promise.all(state.outbox.map((x) => unlocks.deliver(x, now)));
      stats.unlocks += fresh.filter(Boolean).length;
      store.remember(key, { state: { ...state, outbox: [] }, revision });
    }
    stats.applied += r.applied;
    stats.duplicates += r.duplicates;
    stats.unchanged += r.unchanged;
  }
}

import type { ConsumerMessages, JsMsg, StreamInfo } from "@nats-io/jetstream";
import type { Timings } from "../../config/mod.ts";
import { parseConsumerName, partitionConsumer, partitionConsumerConfig, Streams } from "../../nats/mod.ts";
import { answerWithin, background, sleep } from "../../util/lifecycle.ts";
import type { Logger } from "../../util/log.ts";
import { retrying, TransientError } from "../retry.ts";
import type { HooksFor, WorkerDeps } from "./deps.ts";

/** What {@link PartitionConsumer} needs: the clients, the config, the stats, and the timings (`pullAhead`). */
export type ConsumerDeps = Pick<WorkerDeps, "js" | "jsm" | "config" | "stats"> & { timings: Pick<Timings, "pullAhead"> };

/**
 * A partition's durable consumer and its generations, and the queue of
 * gap-free deliveries it feeds.
 *
 * Every (re)open is a new generation: late callbacks of a closed consumer
 * are ignored. Only a run of deliveries without a hole reaches the queue:
 * when the delivery sequence jumps (or the consumer fails), {@link gap} is
 * set and the owner must {@link rewind}, which recreates the consumer at its
 * ack floor so that what was pending comes back first and in order.
 */
export class PartitionConsumer {
  readonly #d: ConsumerDeps;
  readonly #log: Logger;
  readonly #queue: JsMsg[] = [];
  #messages: ConsumerMessages | undefined;
  #wake: (() => void) | undefined;
  /** Wakes the pump when the queue has room again. */
  #space: (() => void) | undefined;
  #expect = 1;
  #gap = false;
  /** The durable consumer read now, and when it last delivered (or was opened, or checked for a stall). */
  #name: string | undefined;
  #heardAt = 0;
  /** Deliveries received (of any generation), to tell whether one came while a stall check waited. */
  #delivered = 0;
  /** Bumped on every (re)open and close, so late callbacks of a closed consumer are ignored. */
  #generation = 0;

  /** `isRunning` is the worker's: a stopping worker's pump neither waits for room nor reports failures. */
  constructor(
    deps: ConsumerDeps,
    log: Logger,
    readonly partition: number,
    private readonly isRunning: () => boolean,
  ) {
    this.#d = deps;
    this.#log = log;
  }

  /** True once a delivery went missing or the consumer failed: nothing more is queued until {@link rewind}. */
  get gap(): boolean {
    return this.#gap;
  }

  /** Deliveries queued and not yet taken. */
  get length(): number {
    return this.#queue.length;
  }

  /** Takes up to `n` queued deliveries, in order, and lets the pump read on. */
  take(n: number): JsMsg[] {
    const batch = this.#queue.splice(0, n);
    this.#space?.();
    return batch;
  }

  /**
   * Waits until a delivery arrives, the consumer fails, {@link wake} is
   * called, or `ms` passes. Its timer is cleared however the wait ends.
   */
  async idle(ms: number): Promise<void> {
    const woken = new AbortController();
    this.#wake = () => woken.abort();
    try {
      await sleep(ms, woken.signal);
    } finally {
      this.#wake = undefined;
      woken.abort();
    }
  }

  /** Ends a pending {@link idle}. */
  wake(): void {
    this.#wake?.();
  }

  /** Closes the consumer's subscription (the durable consumer stays); late deliveries are ignored. Idempotent. */
  async close(): Promise<void> {
    const m = this.#messages;
    this.#messages = undefined;
    this.#generation++;
    this.#space?.();
    if (m) await m.close().catch(() => undefined);
  }

  /** Closes, drops the queue, and opens again at the ack floor, retrying transient failures with `hooks`. */
  async rewind(hooks: HooksFor): Promise<void> {
    await this.close();
    this.#queue.length = 0;
    await retrying(() => this.open(), hooks([]));
  }

  /**
   * Opens the consumer (a new generation) and starts pulling.
   *
   * In: the partition's durable consumer (created again when missing).
   * Out: a subscription whose first delivery is the first message after the
   * ack floor, when anything was delivered but not acknowledged (a new
   * consumer replaces the old one then); otherwise the existing consumer.
   * Guarantee: never a consumer that starts past a message not yet
   * acknowledged (a lagging replica throws {@link TransientError}).
   */
  async open(): Promise<void> {
    const { jsm, js, config } = this.#d;
    let info = await partitionConsumer(jsm, this.partition);
    if (!info) {
      // A cluster whose copies of the stream are not all current may list consumers it cannot reach now: do not
      // take that for a missing consumer (a generation 0 made beside the real one would start from the beginning).
      await this.#whenReplicasCurrent("no consumer listed");
      // Gone (deleted by hand): start it again from the beginning; what was applied already is recognised by the users' states.
      this.#log.warn("consumer missing; creating it again");
      info = await jsm.consumers.add(Streams.Events, partitionConsumerConfig(config, this.partition));
    }
    // A consumer made at a start sequence (a rewind) that has acknowledged nothing reports a floor of 0 on
    // nats-server 2.9 (2.10+ reports start - 1): everything before its start was acknowledged by the generation it replaced.
    const floor = Math.max(info.ack_floor.stream_seq, (info.config.opt_start_seq ?? 1) - 1);
    if (info.num_ack_pending > 0 || info.num_redelivered > 0 || info.delivered.stream_seq > floor) {
      // Messages were delivered but not acknowledged (a crash, a gap, another owner): start over from the floor,
      // with a new consumer, so they come back first and in order and no late ack reaches the new one.
      // A consumer reads its leader's copy of the stream: do not place one while a copy is behind.
      const stream = await this.#whenReplicasCurrent("cannot rewind");
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
    this.#name = info.name;
    this.#heardAt = Date.now();
    const consumer = await js.consumers.get(Streams.Events, info.name);
    const messages = await consumer.consume({ max_messages: this.#d.timings.pullAhead });
    this.#messages = messages;
    void background(this.#pump(messages, gen), this.#log, "partition consumer's pump failed");
  }

  /**
   * The events stream's info, once every copy of it is current; a copy that
   * is offline or catching up throws {@link TransientError} (`what` says what waits).
   */
  async #whenReplicasCurrent(what: string): Promise<StreamInfo> {
    const stream = await this.#d.jsm.streams.info(Streams.Events);
    const lagging = stream.cluster?.replicas?.filter((r) => !r.current || r.offline) ?? [];
    if (lagging.length > 0) throw new TransientError(`partition ${this.partition}: ${what} while events stream replicas ${lagging.map((r) => r.name).join(", ")} are catching up`);
    return stream;
  }

  /**
   * Moves messages from the consumer into the queue, and stops reading
   * while the queue holds two batches: the client then stops pulling, so a
   * slow partition keeps a bounded number of messages in memory and none
   * waits past the ack wait to be redelivered.
   */
  async #pump(messages: ConsumerMessages, gen: number): Promise<void> {
    const full = this.#d.timings.pullAhead;
    try {
      for await (const m of messages) {
        if (gen !== this.#generation) break;
        this.#onMessage(m);
        while (this.#queue.length >= full && gen === this.#generation && this.isRunning()) await new Promise<void>((r) => (this.#space = r));
      }
    } catch (err) {
      // The consumer failed (deleted, connection closed for good): the gap check or a rewind reopens it.
      if (gen === this.#generation && this.isRunning()) {
        this.#log.warn({ err: String(err) }, "consumer stopped; rewinding");
        this.#gap = true;
        this.#wake?.();
      }
    }
  }

  /**
   * Whether the subscription is stuck: nothing delivered for `quietMs` while
   * the consumer holds messages not yet delivered (a pull request lost with
   * a server or a network split). Asks the server at most once per
   * `quietMs`; an unanswered question is no stall. A stuck consumer is
   * marked as a gap (read through {@link gap}), so the owner rewinds (a new
   * subscription from the ack floor).
   */
  async stalled(quietMs: number): Promise<void> {
    const name = this.#name;
    if (!name || this.#gap || this.#queue.length > 0 || Date.now() - this.#heardAt < quietMs) return;
    this.#heardAt = Date.now();
    const [gen, delivered] = [this.#generation, this.#delivered];
    const info = await answerWithin(this.#d.jsm.consumers.info(Streams.Events, name), Math.min(quietMs, 5000), (err) => this.#log.debug({ consumer: name, err }, "stall check: consumer info failed; not taken as a stall"));
    // Something arrived meanwhile, or the consumer was reopened: not stuck.
    if (!info || info.num_pending === 0 || gen !== this.#generation || delivered !== this.#delivered) return;
    this.#log.warn({ consumer: name, pending: info.num_pending, quiet_ms: quietMs }, "consumer delivered nothing while messages wait; reopening it");
    this.#gap = true;
  }

  #onMessage(m: JsMsg): void {
    this.#heardAt = Date.now();
    this.#delivered++;
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
}

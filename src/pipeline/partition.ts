import type { JsMsg } from "@nats-io/jetstream";
import { compileConfig, type Timings } from "../config/mod.ts";
import { background, sleep } from "../util/lifecycle.ts";
import type { Logger } from "../util/log.ts";
import { ReorderBuffer } from "./reorder.ts";
import { RewindError, StoppedError, type RetryHooks } from "./retry.ts";
import { AckTracker } from "./worker/acks.ts";
import { PartitionConsumer } from "./worker/consumer.ts";
import type { WorkerDeps, WriteGate } from "./worker/deps.ts";
import { BatchStep } from "./worker/step.ts";
import { UserCommit } from "./worker/user.ts";
import { WriteBehind } from "./worker/write-behind.ts";

export type { WorkerDeps } from "./worker/deps.ts";

/**
 * Consumes one partition: pulls messages, applies each user's events in
 * stream order, commits state, records and publishes unlocks, then acks.
 *
 * This class keeps the lifecycle (start, stop, supervise) and the lease
 * fence; the work is done by its parts (`worker/`): the consumer and its
 * generations ({@link PartitionConsumer}), ack tracking ({@link AckTracker}),
 * one batch step ({@link BatchStep}) and one user's commit
 * ({@link UserCommit}).
 *
 * Ordering: the worker only ever processes a gap-free run of deliveries. It
 * starts by recreating its consumer at the ack floor (so messages left
 * pending by a crash come back first and in order), and if a delivery is
 * ever missing (delivery sequence jumps) it rewinds the same way. So every
 * event is seen in stream order, and `seq <= state.seq` is an exact
 * "already applied" test.
 *
 * Acks: the consumer uses AckAll; after a batch is fully committed the
 * worker acks the last message below the events still held, which
 * acknowledges everything before it.
 */
export class PartitionWorker {
  readonly #d: WorkerDeps;
  readonly #log: Logger;
  #running = false;
  #loop: Promise<void> | undefined;
  /** Events held for order-sensitive rules. */
  readonly #buffer: ReorderBuffer;
  readonly #consumer: PartitionConsumer;
  readonly #acks: AckTracker;
  readonly #step: BatchStep;
  readonly #users: UserCommit;
  /** States changed and not yet written; nothing at or after their oldest event is acknowledged. */
  readonly #wb: WriteBehind;
  /** When the last write or ack was let through the fence (0 before the first). */
  #lastWriteAt = 0;
  readonly #timings: Timings;
  /** Aborted by {@link stop} (and at a closed fence): every wait and retry of this worker ends at once. */
  #abort = new AbortController();
  #signal: AbortSignal;

  constructor(
    deps: WorkerDeps,
    readonly partition: number,
  ) {
    this.#d = deps;
    this.#log = deps.log.child({ partition });
    this.#timings = deps.timings ?? compileConfig(deps.config);
    this.#signal = this.#signalOf(this.#abort);
    this.#buffer = new ReorderBuffer({ ...deps.config.reorder, onRelease: (ms) => deps.stats.observe.reorderHold(ms / 1000) });
    const gate: WriteGate = { check: () => this.#checkFence(), mayAck: () => this.#mayAck() };
    this.#consumer = new PartitionConsumer({ ...deps, timings: this.#timings }, this.#log, partition, () => this.#running);
    this.#acks = new AckTracker(gate);
    const messagesOf = (seqs: ReadonlySet<number>, msgs: readonly JsMsg[]) => this.#acks.messagesOf(seqs, msgs);
    this.#wb = new WriteBehind(deps.config.worker.writeBehind, deps.config.worker.writeBehindUsers);
    this.#users = new UserCommit({ ...deps, gate, messagesOf, wb: this.#wb });
    this.#step = new BatchStep({
      ...deps,
      log: this.#log,
      buffer: this.#buffer,
      users: this.#users,
      gate,
      hooks: (msgs) => this.#hooks(msgs),
      messagesOf,
    });
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

  /** Events held in the reorder window now. */
  get held(): number {
    return this.#buffer.size;
  }

  /** False once stopped (or once it stopped itself because its lease was not renewed in time). */
  get running(): boolean {
    return this.#running;
  }

  /** Starts consuming (after a rewind to the ack floor). */
  async start(): Promise<void> {
    if (this.#abort.signal.aborted) {
      this.#abort = new AbortController();
      this.#signal = this.#signalOf(this.#abort);
    }
    this.#running = true;
    // What a previous run of this worker left unwritten is stale now: its events come again from the ack floor.
    this.#wb.clear();
    await this.#consumer.open();
    // Stopped while it opened (its lease was lost): let nothing run.
    if (!this.#running) return this.#consumer.close();
    this.#loop = background(this.#supervise(), this.#log, "partition loop ended with an error");
  }

  /** This worker's signal: its own controller, and the engine's signal when it has one. */
  #signalOf(own: AbortController): AbortSignal {
    return this.#d.signal ? AbortSignal.any([this.#d.signal, own.signal]) : own.signal;
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
        if (!(await sleep(this.#timings.restartBackoff, this.#signal)) || !this.#running) return;
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
    await this.#consumer.close();
    this.#running = false;
    // A retry pausing (up to worker.maxBackoff) or the restart back-off ends now; the retry then gives the work up.
    this.#abort.abort();
    this.#consumer.wake();
    await this.#loop;
  }

  /** Takes gap-free batches from the consumer and steps them, until stopped and the queue is empty. */
  async #run(): Promise<void> {
    const { config } = this.#d;
    const consumer = this.#consumer;
    while (this.#running || consumer.length > 0) {
      if (consumer.gap && this.#running) {
        await this.#rewind();
        continue;
      }
      if (consumer.length === 0) {
        if (!this.#running) break;
        // Idle: wait for messages, or until a held event or a deferred write is due; now and then, ask whether the consumer is stuck.
        const now = Date.now();
        const due = earliest(this.#buffer.nextDue(now), this.#wb.nextDue(now));
        if (due !== 0) {
          const check = this.#timings.stallCheck;
          await consumer.idle(due === undefined ? check : Math.min(due + 1, check));
          const later = Date.now();
          if (consumer.length === 0 && this.#buffer.nextDue(later) !== 0 && this.#wb.nextDue(later) !== 0) {
            if (this.#running) await consumer.stalled(check);
            continue;
          }
        }
      }
      const batch = consumer.take(config.worker.batchSize);
      if (batch.length && this.#log.isLevelEnabled("debug")) this.#log.debug({ first: batch[0]!.seq, last: batch[batch.length - 1]!.seq, n: batch.length, d0: batch[0]!.info.deliverySequence }, "batch");
      try {
        await this.#step.process(batch);
        await this.#users.flush(this.#hooks(batch));
      } catch (err) {
        if (err instanceof StoppedError) break;
        if (err instanceof RewindError) {
          this.#log.info({ reason: err.message }, "a deferred state could not be written; starting over from the ack floor");
          await this.#rewind();
          continue;
        }
        throw err;
      }
      this.#acks.processed(batch);
      this.#acks.ackFloor(earliest(this.#buffer.minSeq(), this.#wb.minSeq()));
    }
  }

  /**
   * Back to the ack floor: held and unacknowledged events come again from
   * there. Deferred states stay: they are this worker's, and their events
   * come again as redeliveries, which they already hold.
   */
  async #rewind(): Promise<void> {
    this.#buffer.clear();
    this.#acks.clear();
    await this.#consumer.rewind((msgs) => this.#hooks(msgs));
  }

  /** Called right before every write: stops the work in hand when the lease may have passed to another worker. */
  #checkFence(): void {
    if (this.#d.fence && !this.#d.fence()) {
      this.#running = false;
      this.#abort.abort();
      throw new StoppedError(`partition ${this.partition}: lease not renewed in time; not writing`);
    }
    this.#lastWriteAt = Date.now();
  }

  /** Called right before an ack: false (and the ack is skipped) when the fence is closed. */
  #mayAck(): boolean {
    if (this.#d.fence && !this.#d.fence()) return false;
    this.#lastWriteAt = Date.now();
    return true;
  }

  #hooks(msgs: JsMsg[]): RetryHooks {
    return {
      isRunning: () => this.#running,
      maxBackoff: this.#timings.retryMax,
      baseBackoff: this.#timings.retryBase,
      signal: this.#signal,
      maxAttempts: this.#d.config.worker.maxAttempts,
      onConflict: () => this.#d.stats.conflicts++,
      onRetry: (err: unknown, attempt: number) => {
        this.#d.stats.retries++;
        if (attempt === 1 || attempt % 10 === 0) this.#log.warn({ err: String(err), attempt }, "transient failure; retrying");
        for (const m of msgs) m.working();
      },
    };
  }
}

/** The smaller of two optional numbers (undefined: neither). */
function earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { LimitFunction } from "p-limit";
import type { Config, Timings } from "../../config/mod.ts";
import { eventSubject, parsePartitionedSubject, type Rejection } from "../../events/mod.ts";
import type { RuleBook } from "../../rules/mod.ts";
import type { SeenArchive, StateStore } from "../../state/mod.ts";
import type { Logger } from "../../util/log.ts";
import type { DeadLetter, DeadLetters } from "../dlq.ts";
import type { RetryHooks } from "../retry.ts";
import type { Stats } from "../../metrics/stats.ts";
import type { UnlockSink } from "../unlocks.ts";

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
  /** The derived timings (computed from `config` when not given). */
  timings?: Timings;
  /** Aborted when the engine stops: every wait and retry of the worker ends. */
  signal?: AbortSignal;
};

/**
 * The lease fence as the parts see it (the partition worker implements it).
 * `check()` comes right before every write: it throws `StoppedError` (and
 * stops the worker) when the lease may have passed to another worker.
 * `mayAck()` comes before an ack: false when the fence is closed, and the
 * ack is skipped (the messages come again).
 */
export type WriteGate = {
  check(): void;
  mayAck(): boolean;
};

/** Retry hooks for work on the given messages (kept in progress while it retries). */
export type HooksFor = (msgs: JsMsg[]) => RetryHooks;

/** A dead letter for one message of the partition, with the subject as published (not the partitioned one). */
export function deadLetterOf(m: JsMsg, rejection: Rejection): DeadLetter {
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

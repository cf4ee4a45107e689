import type { Config } from "./schema.ts";

/** How long start-up keeps asking a server that does not answer, per step (streams, mapping probe). */
export const STARTUP_WAIT_MS = 30_000;
/** How long one request of the hot path (state, seen ids, unlocks, records) waits for its answer. */
export const REQUEST_TIMEOUT_MS = 5_000;
/** First pause of the retry back-off; it doubles up to `worker.maxBackoff`. */
export const RETRY_BASE_MS = 25;
/** Pause before a partition whose loop failed starts over from its ack floor. */
export const RESTART_BACKOFF_MS = 1_000;
/** Pause between attempts to reach NATS at start (within `nats.connectTimeout`). */
export const CONNECT_RETRY_MS = 250;
/** An idle partition asks its consumer this often whether messages wait that are not being delivered. */
const STALL_CHECK_MS = 20_000;

/**
 * Every timing the engine derives from its configuration, in milliseconds,
 * computed once ({@link deriveTimings}) and handed to the parts that use
 * them; their relations are checked by {@link timingIssues}. `achd config
 * --timings` prints them.
 */
export type Timings = {
  /** `leases.ttl`: a lease (and a worker's heartbeat) nobody renews expires after this. */
  leaseTtl: number;
  /** Heartbeat and all leases are renewed this often: ttl/5, at least 100 ms. */
  renewEvery: number;
  /** A partition stops writing once its lease went this long without a renewal: ttl/2. */
  fence: number;
  /** A renewal waits for its answer at least `renewEvery`, at most until the fence would close. */
  renewTimeoutMin: number;
  /** The coordinator plans (hand over, acquire) this often: ttl/3, at least 200 ms. */
  tick: number;
  /** A worker counts in the plan once seen live this long without a gap: the TTL. */
  settle: number;
  /** A request of the hot path gives up after this ({@link REQUEST_TIMEOUT_MS}). */
  requestTimeout: number;
  /** How often overdue requests are expired: requestTimeout/4, within 50 ms … 1 s. */
  requestSweep: number;
  /** Messages a partition keeps pulled ahead: two batches (`worker.batchSize`), at least 100. */
  pullAhead: number;
  /** First retry pause ({@link RETRY_BASE_MS}); doubles on each attempt. */
  retryBase: number;
  /** Longest retry pause: `worker.maxBackoff`. */
  retryMax: number;
  /** Pause before a failed partition loop restarts from its ack floor ({@link RESTART_BACKOFF_MS}). */
  restartBackoff: number;
  /** `worker.ackWait`: a delivered, unacknowledged message comes again after this. */
  ackWait: number;
  /** `worker.writeBehind`: a changed user state waits at most this long for its write (and its events for their ack). */
  writeBehind: number;
  /** `nats.connectTimeout`: start-up gives up reaching NATS after this. */
  connectTimeout: number;
  /** Pause between connection attempts at start ({@link CONNECT_RETRY_MS}). */
  connectRetry: number;
  /** Each start-up step (streams, mapping probe) is retried this long ({@link STARTUP_WAIT_MS}). */
  startupWait: number;
  /** `shutdownGrace`: stop waits this long for in-flight work, then cuts it short. */
  shutdownGrace: number;
  /**
   * A partition that received nothing for this long while its consumer says messages wait reopens its
   * subscription ({@link STALL_CHECK_MS}): a pull lost in a network split must not stall it until the client's
   * own heartbeat check notices.
   */
  stallCheck: number;
};

/** A relation between timings that a configuration breaks; `fields` are the settings to change. */
export type TimingIssue = { fields: string[]; message: string };

/** Computes every derived timing from a validated configuration (no checks: see {@link timingIssues}). */
export function deriveTimings(config: Config): Timings {
  const ttl = config.leases.ttl;
  const renewEvery = Math.max(100, Math.floor(ttl / 5));
  return {
    leaseTtl: ttl,
    renewEvery,
    fence: ttl / 2,
    renewTimeoutMin: renewEvery,
    tick: Math.max(200, Math.floor(ttl / 3)),
    settle: ttl,
    requestTimeout: REQUEST_TIMEOUT_MS,
    requestSweep: Math.max(50, Math.min(1000, REQUEST_TIMEOUT_MS / 4)),
    pullAhead: Math.max(config.worker.batchSize * 2, 100),
    retryBase: RETRY_BASE_MS,
    retryMax: config.worker.maxBackoff,
    restartBackoff: RESTART_BACKOFF_MS,
    ackWait: config.worker.ackWait,
    writeBehind: config.worker.writeBehind,
    connectTimeout: config.nats.connectTimeout,
    connectRetry: CONNECT_RETRY_MS,
    startupWait: STARTUP_WAIT_MS,
    shutdownGrace: config.shutdownGrace,
    stallCheck: STALL_CHECK_MS,
  };
}

/**
 * The relations the engine relies on, each broken one with the settings
 * that decide it:
 * - two renewals fit before the fence closes (`2 × renewEvery < fence`): one
 *   late renewal never stops a partition;
 * - the fence closes before the lease can expire (`fence < ttl`): a worker
 *   stops writing before anyone else can take its partition;
 * - the coordinator plans before the fence would close (`tick < fence`);
 * - a request is answered or given up before its message is delivered again
 *   (`requestTimeout < worker.ackWait`);
 * - a deferred state is written well before its events are delivered
 *   again (`2 × worker.writeBehind < worker.ackWait`);
 * - a retry pause ends before its message is delivered again
 *   (`worker.maxBackoff < worker.ackWait`): a redelivery in between is a
 *   delivery gap, and the partition rewinds.
 */
export function timingIssues(t: Timings): TimingIssue[] {
  const out: TimingIssue[] = [];
  const ms = (n: number) => `${Math.round(n)} ms`;
  if (2 * t.renewEvery >= t.fence) {
    out.push({ fields: ["leases.ttl"], message: `too short: two lease renewals (every ttl/5, at least 100 ms: ${ms(t.renewEvery)}) must fit before the fence closes (ttl/2: ${ms(t.fence)}); use at least 500ms` });
  }
  if (t.fence >= t.leaseTtl) out.push({ fields: ["leases.ttl"], message: `the fence (${ms(t.fence)}) must close before the lease expires (${ms(t.leaseTtl)})` });
  if (t.tick >= t.fence) {
    out.push({ fields: ["leases.ttl"], message: `too short: the coordinator's tick (ttl/3, at least 200 ms: ${ms(t.tick)}) must come before the fence closes (ttl/2: ${ms(t.fence)}); use at least 500ms` });
  }
  if (t.requestTimeout >= t.ackWait) {
    out.push({ fields: ["worker.ackWait"], message: `must be longer than the request timeout (${ms(t.requestTimeout)}): a message must not be delivered again while a request for it waits` });
  }
  if (t.writeBehind * 2 >= t.ackWait) {
    out.push({ fields: ["worker.writeBehind", "worker.ackWait"], message: `worker.writeBehind (${ms(t.writeBehind)}) must be under half of worker.ackWait (${ms(t.ackWait)}): a message waits for its state's write before it is acknowledged` });
  }
  if (t.retryMax >= t.ackWait) {
    out.push({ fields: ["worker.maxBackoff", "worker.ackWait"], message: `worker.maxBackoff (${ms(t.retryMax)}) must be shorter than worker.ackWait (${ms(t.ackWait)}): a message must not be delivered again while its retry pauses` });
  }
  return out;
}

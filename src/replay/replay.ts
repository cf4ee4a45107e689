import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Config } from "../config/mod.ts";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { PARTITIONED_PREFIX, type EventLimits } from "../events/mod.ts";
import { Streams } from "../nats/mod.ts";
import { fileThenStream, streamEvents, type StreamRange } from "../history/source.ts";
import { unlockRecordKey, type FingerprintSpec } from "../core/mod.ts";
import type { RuleBook, Unlock } from "../rules/mod.ts";
import { Shard, type ShardChunk, type ShardInit, type ShardResult } from "./shard.ts";
import { UnlockRecords } from "../pipeline/unlock-records.ts";

/** What re-evaluating the stored stream gave. */
export type Replay = {
  /** Messages read (probes excluded). */
  events: number;
  /** Messages that are not valid events (the workers dead-lettered them). */
  rejected: number;
  duplicates: number;
  /** In event-time order of unlocking (then by id). */
  unlocks: Unlock[];
  /** The candidate book's unlocks, in the same order (when one was given). */
  candidate?: Unlock[];
  /** Distinct users seen. */
  users: number;
  /** Threads that evaluated (each holds a share of the users). */
  threads: number;
  /** Stream sequences covered (first and last read; the range asked for when nothing was read). */
  fromSeq: number;
  toSeq: number;
  /** True when the run was cancelled (its signal aborted) before the end: the counts cover what was read. */
  cancelled: boolean;
};

export type ReplayOptions = {
  book: RuleBook;
  /** A second book evaluated beside `book` over the same events (shadow runs). */
  candidate?: RuleBook | undefined;
  maxBytes: number;
  /** The partition count the stream was created with (a message on another partition than its user's is rejected). */
  partitions: number;
  recentIds?: number;
  fingerprints?: readonly FingerprintSpec[];
  /** The config's `limits`, as the workers had them (default: their defaults); the horizon is checked against each message's stream time. */
  limits?: Partial<EventLimits> | undefined;
  /** First stream sequence to read (default: the first stored). */
  fromSeq?: number | undefined;
  /** Last stream sequence to read (default: the last stored when the run starts). */
  toSeq?: number | undefined;
  /** From this stream time on (epoch ms). */
  fromTime?: number | undefined;
  /** Only this tenant's events. */
  tenant?: string | undefined;
  /** Read a history export (JSONL) first, then the stream after its last sequence. */
  file?: string | undefined;
  /** Evaluating threads (default: the cores but one, at most 4); 1 evaluates on the calling thread. */
  threads?: number | undefined;
  /** Stops reading when aborted; the result says `cancelled`. */
  signal?: AbortSignal | undefined;
  /** At most this many events a second are read (a backfill's throttle; default: no limit). */
  eventsPerSecond?: number | undefined;
  /** Told how many of the range's messages have been read, and how many it holds (for a progress bar). */
  onProgress?: ((done: number, total?: number) => void) | undefined;
};

/** Events read between turns given to the event loop (its I/O and timers). */
const YIELD_EVERY = 500;
/** How stored events are decoded and evaluated: as the workers do, from the config. */
export function evalOptionsOf(config: Config): Pick<ReplayOptions, "maxBytes" | "partitions" | "limits" | "recentIds" | "fingerprints"> & { recentIds: number; fingerprints: readonly FingerprintSpec[] } {
  return { maxBytes: config.events.maxBytes, partitions: config.partitions, limits: config.limits, recentIds: config.worker.recentIds, fingerprints: config.dedup.fingerprints };
}

/** Messages per chunk sent to a thread, and chunks a thread may have queued before reading waits. */
const CHUNK = 1000;
const QUEUED = 4;

/** Where a replay sends messages: the calling thread, or a pool of threads. */
interface Sink {
  /** Takes one message; returns a promise when the reader should wait (the threads are behind). */
  add(subject: string, data: Uint8Array, msgId: string | undefined, seq: number, storedAt: number): Promise<void> | undefined;
  finish(): Promise<ShardResult[]>;
}

class InlineSink implements Sink {
  readonly #shard: Shard;
  constructor(init: ShardInit) {
    this.#shard = new Shard(init);
  }
  add(subject: string, data: Uint8Array, msgId: string | undefined, seq: number, storedAt: number): undefined {
    this.#shard.add(subject, data, msgId, seq, storedAt);
    return undefined;
  }
  async finish(): Promise<ShardResult[]> {
    return [this.#shard.result()];
  }
}

type Building = { subjects: string[]; msgIds: (string | undefined)[]; seqs: number[]; times: number[]; ends: number[]; parts: Uint8Array[]; bytes: number };
const building = (): Building => ({ subjects: [], msgIds: [], seqs: [], times: [], ends: [], parts: [], bytes: 0 });

/**
 * Worker threads, each evaluating the users of some partitions (a user's
 * events all land in one partition, so each user's events stay in stream
 * order on one thread). Messages go over in chunks, their bodies copied into
 * one transferred buffer.
 */
class PoolSink implements Sink {
  readonly #workers: Worker[] = [];
  readonly #queued: number[];
  readonly #chunks: Building[];
  readonly #results: Promise<ShardResult>[] = [];
  #failed: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(threads: number, init: ShardInit) {
    const ts = import.meta.url.endsWith(".ts");
    const file = new URL(ts ? "./shard.ts" : "./shard.js", import.meta.url);
    // From sources, the thread first registers the TypeScript loader the CLI runs under (Node 20 does not pass it on).
    const tsx = new URL("dist/esm/api/index.mjs", pathToFileURL(createRequire(import.meta.url).resolve("tsx/package.json"))).href;
    const entry: string | URL = ts ? `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(file.href)}); });` : file;
    this.#queued = new Array<number>(threads).fill(0);
    this.#chunks = Array.from({ length: threads }, building);
    for (let i = 0; i < threads; i++) {
      const w = new Worker(entry, { workerData: { replayShard: init }, eval: ts });
      this.#results.push(
        new Promise<ShardResult>((resolve, reject) => {
          w.on("message", (m: { done?: true; result?: ShardResult }) => {
            if (m.done) {
              this.#queued[i]!--;
              this.#wake?.();
            } else if (m.result) resolve(m.result);
          });
          w.on("error", (err) => {
            this.#failed = err;
            this.#wake?.();
            reject(err);
          });
        }),
      );
      // A failure is reported by finish() or the next add(); do not let it go unhandled meanwhile.
      this.#results[i]!.catch(() => undefined);
      this.#workers.push(w);
    }
  }

  add(subject: string, data: Uint8Array, msgId: string | undefined, seq: number, storedAt: number): Promise<void> | undefined {
    if (this.#failed) throw this.#failed;
    const i = partitionOf(subject) % this.#workers.length;
    const c = this.#chunks[i]!;
    c.subjects.push(subject);
    c.msgIds.push(msgId);
    c.seqs.push(seq);
    c.times.push(storedAt);
    c.parts.push(data);
    c.bytes += data.length;
    c.ends.push(c.bytes);
    if (c.seqs.length < CHUNK) return undefined;
    this.#send(i);
    return this.#queued[i]! >= QUEUED ? this.#room(i) : undefined;
  }

  #send(i: number): void {
    const c = this.#chunks[i]!;
    if (c.seqs.length === 0) return;
    this.#chunks[i] = building();
    const data = new Uint8Array(c.bytes);
    let at = 0;
    for (const p of c.parts) {
      data.set(p, at);
      at += p.length;
    }
    const chunk: ShardChunk = { subjects: c.subjects, msgIds: c.msgIds, seqs: c.seqs, times: c.times, ends: c.ends, data };
    this.#queued[i]!++;
    this.#workers[i]!.postMessage({ chunk }, [data.buffer]);
  }

  async #room(i: number): Promise<void> {
    while (this.#queued[i]! >= QUEUED && !this.#failed) await new Promise<void>((r) => (this.#wake = r));
    if (this.#failed) throw this.#failed;
  }

  async finish(): Promise<ShardResult[]> {
    try {
      for (let i = 0; i < this.#workers.length; i++) {
        this.#send(i);
        this.#workers[i]!.postMessage({ end: true });
      }
      return await Promise.all(this.#results);
    } finally {
      await Promise.all(this.#workers.map((w) => w.terminate()));
    }
  }
}

/** The partition number of a partitioned subject (`ach.p.<k>.…`), or 0. */
function partitionOf(subject: string): number {
  const from = PARTITIONED_PREFIX.length + 1;
  const dot = subject.indexOf(".", from);
  const k = Number(subject.slice(from, dot));
  return Number.isInteger(k) && k >= 0 ? k : 0;
}

/**
 * Re-evaluates the events stream, as stored, under `book`, in memory: one
 * ordered consumer (no acks, no per-event round trip) streams every
 * partitioned event in stream order into the same evaluation path the
 * workers use, on worker threads that each take a share of the partitions.
 * Nothing is written: the result is a sandbox to compare with what the
 * workers recorded (backfills, rule changes). Under the same rules it gives
 * the unlocks the workers gave (design.md guarantee 3). With a `candidate`
 * book, both are evaluated side by side over the one read.
 */
export async function replayStream(js: JetStreamClient, jsm: JetStreamManager, opts: ReplayOptions): Promise<Replay> {
  const info = await jsm.streams.info(Streams.Events);
  const fromSeq = Math.max(opts.fromSeq ?? 1, opts.file ? 1 : info.state.first_seq);
  const toSeq = Math.min(opts.toSeq ?? info.state.last_seq, info.state.last_seq);
  // By default one core is left to the reading thread and the server: on two cores, threads only share one.
  const threads = Math.max(1, opts.threads ?? Math.min(4, availableParallelism() - 1));
  const out: Replay = { events: 0, rejected: 0, duplicates: 0, unlocks: [], users: 0, threads, fromSeq, toSeq, cancelled: false, ...(opts.candidate ? { candidate: [] } : {}) };
  const range: StreamRange = { fromSeq, toSeq, fromTime: opts.fromTime, tenant: opts.tenant };
  // Every stored message is partitioned, so the range holds at most this many; the first message's pending count narrows it.
  let total = opts.file ? undefined : Math.max(0, Math.min(info.state.messages, toSeq - fromSeq + 1));
  const source = opts.file ? fileThenStream(opts.file, js, jsm, range) : streamEvents(js, jsm, range, (t) => (total = t));
  const init: ShardInit = {
    rules: opts.book.all(),
    maxBytes: opts.maxBytes,
    partitions: opts.partitions,
    limits: opts.limits,
    recentIds: opts.recentIds ?? 1000,
    fingerprints: opts.fingerprints ?? [],
    ...(opts.candidate ? { candidate: opts.candidate.all() } : {}),
  };
  const sink: Sink = threads > 1 ? new PoolSink(threads, init) : new InlineSink(init);
  const pace = opts.eventsPerSecond ? new Pace(opts.eventsPerSecond) : undefined;
  let first = 0;
  let last = 0;
  opts.onProgress?.(0, total);
  try {
    for await (const e of source) {
      if (opts.signal?.aborted) {
        out.cancelled = true;
        break;
      }
      if (!first) first = e.seq;
      last = e.seq;
      out.events++;
      opts.onProgress?.(out.events, total);
      const wait = sink.add(e.subject, e.data, e.msgId, e.seq, e.storedAt);
      if (wait) await wait;
      if (pace) await pace.take();
      // Buffered messages come through the iterator as resolved promises: without a turn of the event loop now and
      // then, a run on the calling thread (an API request's) would keep every socket and timer of the process waiting.
      if (out.events % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
    }
  } finally {
    const results = await sink.finish();
    for (const r of results) {
      out.rejected += r.rejected;
      out.duplicates += r.duplicates;
      out.users += r.users;
      // One at a time: a spread of hundreds of thousands of arguments overflows the stack.
      for (const u of r.unlocks) out.unlocks.push(u);
      if (out.candidate && r.candidate) for (const u of r.candidate) out.candidate.push(u);
    }
  }
  if (first) {
    out.fromSeq = first;
    out.toSeq = last;
  }
  out.unlocks.sort(byTime);
  out.candidate?.sort(byTime);
  return out;
}

/** Unlocks in event-time order of unlocking, then by id. */
export function byTime(a: Unlock, b: Unlock): number {
  return a.unlocked_at < b.unlocked_at ? -1 : a.unlocked_at > b.unlocked_at ? 1 : a.unlock_id < b.unlock_id ? -1 : a.unlock_id > b.unlock_id ? 1 : 0;
}

/**
 * A steady pace of at most `perSecond` steps: each step takes a slot, and
 * sleeps when it is ahead of the schedule (checked every few steps, so
 * the cost is a timer per tens of events, not per event).
 */
export class Pace {
  readonly #perSecond: number;
  readonly #t0 = performance.now();
  #n = 0;
  constructor(perSecond: number) {
    this.#perSecond = perSecond;
  }
  async take(): Promise<void> {
    this.#n++;
    if (this.#n % Math.max(1, Math.floor(this.#perSecond / 100)) !== 0) return;
    const due = this.#t0 + (this.#n / this.#perSecond) * 1000;
    const ahead = due - performance.now();
    if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));
  }
}

/** How a replay's unlocks compare with the unlock records the workers wrote. */
export type Reconciliation = {
  /** Unlock records (unlocks in the unlocks stream, one per unlock subject). */
  recorded: number;
  /** Unlocks the replay gives that have no record (what a backfill would add). */
  notRecorded: Unlock[];
  /** Record keys the replay does not give. */
  recordedOnly: string[];
};

/** Compares `unlocks` (from {@link replayStream}) with the unlocks recorded in the unlocks stream. */
export async function reconcile(js: JetStreamClient, jsm: JetStreamManager, unlocks: readonly Unlock[]): Promise<Reconciliation> {
  const recorded = new Set(await new UnlockRecords(js, jsm).keys());
  const replayed = new Map(unlocks.map((u) => [unlockRecordKey(u), u]));
  return {
    recorded: recorded.size,
    notRecorded: [...replayed].filter(([k]) => !recorded.has(k)).map(([, u]) => u),
    recordedOnly: [...recorded].filter((k) => !replayed.has(k)),
  };
}

import { parentPort, workerData } from "node:worker_threads";
import { decodeMessage, type DecodeOptions, type EventLimits } from "../events/mod.ts";
import type { FingerprintSpec } from "../core/mod.ts";
import { RuleBook, type RuleVersion, type Unlock } from "../rules/mod.ts";
import { InMemoryEvaluator } from "../sim/mod.ts";

/** What a replay shard is started with: everything is plain data (rules as their versions). */
export type ShardInit = {
  rules: { tenant: string; version: RuleVersion }[];
  maxBytes: number;
  partitions: number;
  /** The config's `limits` (default: their defaults). */
  limits?: Partial<EventLimits> | undefined;
  recentIds: number;
  fingerprints: readonly FingerprintSpec[];
  /** A second rule book evaluated beside the first over the same messages (a shadow run's candidate). */
  candidate?: { tenant: string; version: RuleVersion }[] | undefined;
};

/** A run of messages for one shard: bodies back to back in `data`, `ends[i]` where body i ends, `times[i]` when the stream stored it (epoch ms). */
export type ShardChunk = { subjects: string[]; msgIds: (string | undefined)[]; seqs: number[]; times: number[]; ends: number[]; data: Uint8Array };

/** What a shard reports at the end. */
export type ShardResult = { unlocks: Unlock[]; rejected: number; duplicates: number; users: number; candidate?: Unlock[] };

/** Rebuilds a rule book from {@link RuleBook.all}. */
export function bookOf(rules: ShardInit["rules"]): RuleBook {
  const tenants = new Map<string, RuleVersion[]>();
  const shared: RuleVersion[] = [];
  for (const { tenant, version } of rules) {
    if (tenant === "*") shared.push(version);
    else tenants.set(tenant, [...(tenants.get(tenant) ?? []), version]);
  }
  return new RuleBook(shared, tenants);
}

/** One shard of a replay: the users whose events it is sent, evaluated in stream order. */
export class Shard {
  readonly #ev: InMemoryEvaluator;
  readonly #candidate: InMemoryEvaluator | undefined;
  readonly #decode: DecodeOptions;
  rejected = 0;

  constructor(init: ShardInit) {
    this.#ev = new InMemoryEvaluator(bookOf(init.rules), init.recentIds, init.fingerprints);
    this.#candidate = init.candidate ? new InMemoryEvaluator(bookOf(init.candidate), init.recentIds, init.fingerprints) : undefined;
    this.#decode = { maxBytes: init.maxBytes, partitions: init.partitions, limits: init.limits };
  }

  /** Decodes and applies one stored message; `storedAt` is the stream's timestamp of it (epoch ms), as the worker uses. */
  add(subject: string, data: Uint8Array, msgId: string | undefined, seq: number, storedAt: number): void {
    const res = decodeMessage(subject, data, msgId, { ...this.#decode, storedAt });
    if (res.ok) {
      this.#ev.apply(res.value, seq);
      this.#candidate?.apply(res.value, seq);
    } else this.rejected++;
  }

  apply(c: ShardChunk): void {
    let start = 0;
    for (let i = 0; i < c.seqs.length; i++) {
      const end = c.ends[i]!;
      this.add(c.subjects[i]!, c.data.subarray(start, end), c.msgIds[i], c.seqs[i]!, c.times[i]!);
      start = end;
    }
  }

  result(): ShardResult {
    return { unlocks: this.#ev.unlocks, rejected: this.rejected, duplicates: this.#ev.duplicates, users: this.#ev.states.size, ...(this.#candidate ? { candidate: this.#candidate.unlocks } : {}) };
  }
}

// As a worker thread: chunks in, "done" after each (for back-pressure), the result on "end".
if (parentPort && (workerData as { replayShard?: ShardInit } | undefined)?.replayShard) {
  const port = parentPort;
  const shard = new Shard((workerData as { replayShard: ShardInit }).replayShard);
  port.on("message", (m: { chunk?: ShardChunk; end?: true }) => {
    if (m.chunk) {
      shard.apply(m.chunk);
      port.postMessage({ done: true });
    } else if (m.end) {
      port.postMessage({ result: shard.result() });
    }
  });
}

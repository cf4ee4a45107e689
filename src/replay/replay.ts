import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeMessage, PARTITIONED_PREFIX } from "../events/mod.ts";
import { Buckets, PROBE_HEADER, Streams } from "../nats/mod.ts";
import type { FingerprintSpec } from "../pipeline/fingerprint.ts";
import { unlockRecordKey } from "../pipeline/unlocks.ts";
import type { RuleBook, Unlock } from "../rules/mod.ts";
import { InMemoryEvaluator } from "../sim/mod.ts";
import type { UserState } from "../state/mod.ts";

/** What re-evaluating the stored stream gave. */
export type Replay = {
  /** Messages read (probes excluded). */
  events: number;
  /** Messages that are not valid events (the workers dead-lettered them). */
  rejected: number;
  duplicates: number;
  unlocks: Unlock[];
  states: Map<string, UserState>;
  /** Stream sequences covered. */
  fromSeq: number;
  toSeq: number;
};

export type ReplayOptions = {
  book: RuleBook;
  maxBytes: number;
  recentIds?: number;
  fingerprints?: readonly FingerprintSpec[];
  /** First stream sequence to read (default: the first stored). */
  fromSeq?: number;
};

/**
 * Re-evaluates the events stream, as stored, under `book`, in memory: one
 * ordered consumer (no acks, no per-event round trip) streams every
 * partitioned event in stream order into the same evaluation path the
 * workers use. Nothing is written: the result is a sandbox to compare with
 * what the workers recorded (backfills, rule changes). Under the same rules
 * it gives the unlocks the workers gave (design.md guarantee 3).
 */
export async function replayStream(js: JetStreamClient, jsm: JetStreamManager, opts: ReplayOptions): Promise<Replay> {
  const info = await jsm.streams.info(Streams.Events);
  const fromSeq = Math.max(opts.fromSeq ?? 1, info.state.first_seq);
  const toSeq = info.state.last_seq;
  const ev = new InMemoryEvaluator(opts.book, opts.recentIds ?? 1000, opts.fingerprints ?? []);
  const out: Replay = { events: 0, rejected: 0, duplicates: 0, unlocks: ev.unlocks, states: ev.states, fromSeq, toSeq };
  if (info.state.messages === 0 || fromSeq > toSeq) return out;
  const consumer = await js.consumers.get(Streams.Events, { filter_subjects: `${PARTITIONED_PREFIX}.>`, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq });
  const messages = await consumer.consume({ max_messages: 10_000 });
  for await (const m of messages) {
    if (!m.headers?.get(PROBE_HEADER)) {
      out.events++;
      const res = decodeMessage(m.subject, m.data, m.headers?.get("Nats-Msg-Id") || undefined, opts.maxBytes);
      if (res.ok) ev.apply(res.value, m.seq);
      else out.rejected++;
    }
    if (m.seq >= toSeq || m.info.pending === 0) break;
  }
  await messages.close();
  out.duplicates = ev.duplicates;
  return out;
}

/** How a replay's unlocks compare with the unlock records the workers wrote. */
export type Reconciliation = {
  /** Records in `ach_unlocks`. */
  recorded: number;
  /** Unlocks the replay gives that have no record (what a backfill would add). */
  notRecorded: Unlock[];
  /** Record keys the replay does not give. */
  recordedOnly: string[];
};

/** Compares `unlocks` (from {@link replayStream}) with the unlock records in the bucket. */
export async function reconcile(nc: NatsConnection, unlocks: readonly Unlock[]): Promise<Reconciliation> {
  const kv = await new Kvm(nc).open(Buckets.Unlocks);
  const recorded = new Set<string>();
  for await (const k of await kv.keys()) recorded.add(k);
  const replayed = new Map(unlocks.map((u) => [unlockRecordKey(u), u]));
  return {
    recorded: recorded.size,
    notRecorded: [...replayed].filter(([k]) => !recorded.has(k)).map(([, u]) => u),
    recordedOnly: [...recorded].filter((k) => !replayed.has(k)),
  };
}

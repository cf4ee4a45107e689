import { nanos, type NatsConnection } from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { Config } from "../config/mod.ts";
import { DLQ_PREFIX, partitionFilter, partitionMapping, PARTITIONED_PREFIX, EVENTS_PREFIX, UNLOCKED_PREFIX } from "../events/mod.ts";
import { isNotFound } from "./errors.ts";
import { Buckets, consumerName, parseConsumerName, Streams, WEBHOOK_DLQ_PREFIX, WEBHOOK_LOG_PER_WEBHOOK, WEBHOOK_LOG_PREFIX } from "./names.ts";
import type { Logger } from "../util/log.ts";
import { atLeast, parseVersion } from "./server-binary.ts";

/** Where events are mapped to partitions: by the server's config (`mappings`), or by the events stream's own subject transform (2.10+). */
export type MappingSite = "server" | "stream";

/** The server cannot be used as configured; the message says what to change. */
export class TopologyError extends Error {
  override name = "TopologyError";
}

/** Handles on the buckets the engine uses. */
export type BucketHandles = { state: KV; rules: KV; seen: KV; leases: KV; workers: KV; tenants: KV; keys: KV; webhooks: KV; history: KV };

const PARTITIONS_RE = /partitions=(\d+)/;

/** The stream's info, after creating it with `cfg` when it is missing. */
async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<StreamInfo> {
  try {
    return await jsm.streams.info(cfg.name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    return await jsm.streams.add(cfg);
  }
}

/**
 * The events stream's configuration for a server version, and where events
 * are mapped to partitions (default: by the stream itself from 2.10 on, by
 * the server's config before). Both put an event on the same `ach.p.<k>.…`
 * subject.
 */
export function eventsStreamConfig(config: Config, version: [number, number, number], mapping: MappingSite = defaultMapping(version)): Partial<StreamConfig> & { name: string } {
  const P = config.partitions;
  const base = {
    name: Streams.Events,
    description: `achd events (partitions=${P})`,
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: config.nats.replicas,
    max_age: nanos(config.events.maxAge),
    duplicate_window: nanos(config.events.duplicateWindow),
    max_msg_size: -1,
  };
  if (mapping === "stream") {
    if (!atLeast(version, 2, 10)) throw new TopologyError(`nats-server ${version.join(".")} cannot map subjects in a stream (2.10+): the partition mapping must be in the server config`);
    const m = partitionMapping(P);
    return { ...base, subjects: [`${EVENTS_PREFIX}.>`], subject_transform: { src: m.src, dest: m.dest } };
  }
  return { ...base, subjects: [`${PARTITIONED_PREFIX}.*.>`] };
}

function defaultMapping(version: [number, number, number]): MappingSite {
  return atLeast(version, 2, 10) ? "stream" : "server";
}

/** True when the stream's config maps subjects to partitions itself. */
function streamMapsSubjects(cfg: Partial<StreamConfig>): boolean {
  return Boolean(cfg.subject_transform?.src);
}

/**
 * Brings an existing events stream to the mapping in use. A stream made on
 * 2.9 (events arrive mapped by the server) whose server no longer maps them
 * (upgraded to 2.10+, the mapping gone from its config) takes the mapping
 * over: same subjects for stored events, same partitions for new ones. A
 * stream that maps subjects itself on a server that maps them too would
 * receive nothing: refused, with what to remove.
 */
async function settleMapping(jsm: JetStreamManager, info: StreamInfo, want: Partial<StreamConfig> & { name: string }, log?: Logger): Promise<void> {
  const has = streamMapsSubjects(info.config);
  const wants = streamMapsSubjects(want);
  if (has === wants) return;
  if (has) {
    throw new TopologyError(
      `stream ${want.name} maps events to partitions itself, and the server maps them too (a \`mappings\` block for ${EVENTS_PREFIX}.> in its config): events would not reach the stream. ` +
        `Remove that mapping from the server config and reload it (nats-server --signal reload)`,
    );
  }
  await jsm.streams.update(want.name, { ...info.config, subjects: want.subjects!, subject_transform: want.subject_transform! });
  log?.info({ stream: want.name, subjects: want.subjects, transform: want.subject_transform }, "the events stream now maps events to partitions itself (nats-server 2.10+); stored events and their partitions are unchanged");
}

/** The current consumer of each partition (the newest generation), by partition. */
export async function partitionConsumers(jsm: JetStreamManager): Promise<Map<number, ConsumerInfo>> {
  const out = new Map<number, ConsumerInfo>();
  const gen = new Map<number, number>();
  for await (const ci of jsm.consumers.list(Streams.Events)) {
    // A consumer deleted while it is listed (an old generation after a rewind) comes back as null.
    if (!ci) continue;
    const p = parseConsumerName(ci.name);
    if (!p) continue;
    if ((gen.get(p.partition) ?? -1) < p.generation) {
      gen.set(p.partition, p.generation);
      out.set(p.partition, ci);
    }
  }
  return out;
}

/** Messages every partition still has to finish: pending plus delivered and not acknowledged. */
export async function partitionBacklog(jsm: JetStreamManager): Promise<number> {
  let n = 0;
  for (const ci of (await partitionConsumers(jsm)).values()) n += ci.num_pending + ci.num_ack_pending;
  return n;
}

/** True when each of the `partitions` partitions has a consumer with nothing pending and nothing unacknowledged. */
export async function partitionsDrained(jsm: JetStreamManager, partitions: number): Promise<boolean> {
  const consumers = await partitionConsumers(jsm);
  for (let k = 0; k < partitions; k++) {
    const i = consumers.get(k);
    if (!i || i.num_pending > 0 || i.num_ack_pending > 0) return false;
  }
  return true;
}

/** The current consumer of partition `k`, or undefined. */
export async function partitionConsumer(jsm: JetStreamManager, k: number): Promise<ConsumerInfo | undefined> {
  return (await partitionConsumers(jsm)).get(k);
}

/** Configuration of partition `k`'s durable pull consumer (generation `generation`). */
export function partitionConsumerConfig(config: Config, k: number, startSeq?: number, generation = 0): Partial<ConsumerConfig> {
  return {
    durable_name: consumerName(k, generation),
    filter_subject: partitionFilter(k),
    // The worker acks the highest sequence below which everything is applied.
    ack_policy: AckPolicy.All,
    ack_wait: nanos(config.worker.ackWait),
    max_ack_pending: config.worker.maxAckPending,
    max_deliver: -1,
    num_replicas: config.nats.replicas,
    // A rewind names its start even when it is 1: a replica still catching up would start "all" at its own first message.
    ...(startSeq !== undefined ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : { deliver_policy: DeliverPolicy.All }),
  };
}

/**
 * Creates, idempotently, everything the engine needs: the events, DLQ and
 * unlocks streams, the state and unlock buckets, and one consumer per
 * partition. Refuses a stream created with another partition count.
 * `mapping` is where events are mapped to partitions, as
 * {@link checkPartitionMapping} found (default: by the stream from 2.10 on).
 */
export async function ensureTopology(nc: NatsConnection, jsm: JetStreamManager, config: Config, opts: { mapping?: MappingSite; log?: Logger } = {}): Promise<BucketHandles> {
  const version = parseVersion(nc.info?.version ?? "0.0.0");
  const events = eventsStreamConfig(config, version, opts.mapping);
  const info = await ensureStream(jsm, events);
  await settleMapping(jsm, info, events, opts.log);
  const had = Number(PARTITIONS_RE.exec(info.config.description ?? "")?.[1] ?? config.partitions);
  if (had !== config.partitions) {
    throw new TopologyError(
      `stream ${Streams.Events} was created with ${had} partitions but partitions is ${config.partitions}; ` +
        `the partition count is fixed when the stream is created (set partitions: ${had}, or move to a new stream)`,
    );
  }
  await ensureStream(jsm, {
    name: Streams.Dlq,
    description: "achd dead letters",
    subjects: [`${DLQ_PREFIX}.>`],
    storage: StorageType.File,
    num_replicas: config.nats.replicas,
    duplicate_window: nanos(120_000),
  });
  await ensureStream(jsm, {
    name: Streams.Unlocks,
    description: "achd unlock events",
    subjects: [`${UNLOCKED_PREFIX}.>`],
    storage: StorageType.File,
    num_replicas: config.nats.replicas,
    duplicate_window: nanos(config.unlocks.duplicateWindow),
  });
  const kvm = new Kvm(nc);
  const bucket = (name: string, ttl?: number) => openBucket(kvm, config, name, ttl);
  const state = await bucket(Buckets.State);
  const rules = await bucket(Buckets.Rules);
  const seen = await bucket(Buckets.Seen);
  // Entries expire after the lease TTL unless renewed: a dead worker's leases and heartbeat go away on their own.
  const leases = await bucket(Buckets.Leases, config.leases.ttl);
  const workers = await bucket(Buckets.Workers, config.leases.ttl);
  const tenants = await bucket(Buckets.Tenants);
  const keys = await bucket(Buckets.Keys);
  const webhooks = await bucket(Buckets.Webhooks);
  const history = await bucket(Buckets.History);
  await ensureWebhookStreams(jsm, config);
  const current = await partitionConsumers(jsm);
  for (let k = 0; k < config.partitions; k++) {
    if (!current.has(k)) await jsm.consumers.add(Streams.Events, partitionConsumerConfig(config, k));
  }
  return { state, rules, seen, leases, workers, tenants, keys, webhooks, history };
}

/**
 * The webhook dead-letter list and delivery log. Dead letters stay until
 * they are redelivered or deleted (bounded by age: a month); the log keeps
 * the newest {@link WEBHOOK_LOG_PER_WEBHOOK} outcomes of each webhook, for
 * a week.
 */
async function ensureWebhookStreams(jsm: JetStreamManager, config: Config): Promise<void> {
  await ensureStream(jsm, {
    name: Streams.WebhookDlq,
    description: "achd webhook deliveries given up on",
    subjects: [`${WEBHOOK_DLQ_PREFIX}.>`],
    storage: StorageType.File,
    num_replicas: config.nats.replicas,
    max_age: nanos(30 * 86_400_000),
    duplicate_window: nanos(120_000),
  });
  await ensureStream(jsm, {
    name: Streams.WebhookLog,
    description: "achd webhook delivery log",
    subjects: [`${WEBHOOK_LOG_PREFIX}.>`],
    storage: StorageType.File,
    num_replicas: config.nats.replicas,
    max_msgs_per_subject: WEBHOOK_LOG_PER_WEBHOOK,
    max_age: nanos(7 * 86_400_000),
    duplicate_window: nanos(120_000),
  });
}

/**
 * Opens one of the engine's buckets, creating it (idempotently) with the
 * engine's settings when it is missing: what {@link ensureTopology} does for
 * each bucket, for a CLI command that needs one bucket only.
 */
export function openBucket(kvm: Kvm, config: Config, name: string, ttl?: number): Promise<KV> {
  // No direct get: reads after writes see them, also on a cluster.
  return kvm.create(name, { history: 1, replicas: config.nats.replicas, storage: StorageType.File, allow_direct: false, ...(ttl ? { ttl } : {}) });
}

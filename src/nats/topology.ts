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
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { deriveTimings, type Config } from "../config/mod.ts";
import { DLQ_PREFIX, partitionFilter, partitionMapping, PARTITIONED_PREFIX, EVENTS_PREFIX, UNLOCKED_PREFIX } from "../events/mod.ts";
import { isNotFound } from "./errors.ts";
import { Buckets, consumerName, parseConsumerName, Streams } from "./names.ts";
import { atLeast, parseVersion } from "./server-binary.ts";

/** The server cannot be used as configured; the message says what to change. */
export class TopologyError extends Error {
  override name = "TopologyError";
}

/** Handles on the buckets the engine uses. */
export type BucketHandles = { state: KV; unlocks: KV; rules: KV; seen: KV; leases: KV; workers: KV; tenants: KV; keys: KV };

const PARTITIONS_RE = /partitions=(\d+)/;

async function ensureStream(jsm: JetStreamManager, cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
  try {
    await jsm.streams.info(cfg.name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.streams.add(cfg);
  }
}

/** The events stream's configuration for a server version. */
export function eventsStreamConfig(config: Config, version: [number, number, number]): Partial<StreamConfig> & { name: string } {
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
  if (atLeast(version, 2, 10)) {
    const m = partitionMapping(P);
    return { ...base, subjects: [`${EVENTS_PREFIX}.>`], subject_transform: { src: m.src, dest: m.dest } };
  }
  return { ...base, subjects: [`${PARTITIONED_PREFIX}.*.>`] };
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

/**
 * Messages a partition's consumer keeps pulled ahead: two batches (at least
 * 100), as computed with the other timings (`Timings.pullAhead`). The
 * worker stops reading while its queue holds this many.
 */
export function pullAhead(config: Config): number {
  return deriveTimings(config).pullAhead;
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
 */
export async function ensureTopology(nc: NatsConnection, jsm: JetStreamManager, config: Config): Promise<BucketHandles> {
  const version = parseVersion(nc.info?.version ?? "0.0.0");
  const events = eventsStreamConfig(config, version);
  await ensureStream(jsm, events);
  const info = await jsm.streams.info(Streams.Events);
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
  const unlocks = await bucket(Buckets.Unlocks);
  const rules = await bucket(Buckets.Rules);
  const seen = await bucket(Buckets.Seen);
  // Entries expire after the lease TTL unless renewed: a dead worker's leases and heartbeat go away on their own.
  const leases = await bucket(Buckets.Leases, config.leases.ttl);
  const workers = await bucket(Buckets.Workers, config.leases.ttl);
  const tenants = await bucket(Buckets.Tenants);
  const keys = await bucket(Buckets.Keys);
  const current = await partitionConsumers(jsm);
  for (let k = 0; k < config.partitions; k++) {
    if (!current.has(k)) await jsm.consumers.add(Streams.Events, partitionConsumerConfig(config, k));
  }
  return { state, unlocks, rules, seen, leases, workers, tenants, keys };
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

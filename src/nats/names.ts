/** Names of the engine's streams, buckets and consumers. */
export const Streams = {
  Events: "ACH_EVENTS",
  Dlq: "ACH_DLQ",
  /** Unlock events, one per unlock subject (`ach.unlocked.<tenant>.<user>.<achievement>.<tier|_>.<occurrence>`): also the record of every unlock. */
  Unlocks: "ACH_UNLOCKS",
  /** Webhook deliveries given up on (`ach.webhooks.dlq.<tenant>.<webhook id>`), redeliverable by hand. */
  WebhookDlq: "ACH_WEBHOOK_DLQ",
  /** The newest delivery outcomes of each webhook (`ach.webhooks.log.<tenant>.<webhook id>`). */
  WebhookLog: "ACH_WEBHOOK_LOG",
} as const;

export const Buckets = {
  /** Per-user rule state, written with compare-and-set. */
  State: "ach_state",
  /** Rule versions, one create-only key per version: `<scope>.<rule id>.<version>`. */
  Rules: "ach_rules",
  /** Archived event ids per user: `<tenant>.<user>.<phase>.<n>`. */
  Seen: "ach_seen",
  /** Partition leases (`p.<k>`), expiring after the lease TTL. */
  Leases: "ach_leases",
  /** Live workers (`w.<id>`), expiring after the lease TTL. */
  Workers: "ach_workers",
  /** Registered tenants, one key per tenant id: `{tenant, nkey, created_at}` (public keys only, never a seed). */
  Tenants: "ach_tenants",
  /** HTTP API keys by key id: scopes, tenant and the SHA-256 of the secret (never a key). */
  Keys: "ach_keys",
  /** Webhooks by `<tenant>.<webhook id>`: URL, signing secret, filter, enabled. */
  Webhooks: "ach_webhooks",
  /** History runs: reports (`r.<id>`) of shadow runs, backfills and rebuilds, and backfill checkpoints (`b.<run key>`). */
  History: "ach_history",
} as const;

/** Subjects of the webhook dead letters: `<prefix>.<tenant>.<webhook id>`. */
export const WEBHOOK_DLQ_PREFIX = "ach.webhooks.dlq";
/** Subjects of the webhook delivery log: `<prefix>.<tenant>.<webhook id>`. */
export const WEBHOOK_LOG_PREFIX = "ach.webhooks.log";
/** How many delivery outcomes the log keeps per webhook: the stream drops older ones, the API lists at most this many. */
export const WEBHOOK_LOG_PER_WEBHOOK = 100;

/**
 * Durable consumer of partition `k`, generation `g`. A rewind creates the
 * next generation and deletes the old one, so that acks still in flight to
 * the old consumer (buffered by a client during an outage) can never move
 * the new one's ack floor.
 */
export function consumerName(k: number, generation = 0): string {
  return generation === 0 ? `p-${k}` : `p-${k}-g${generation}`;
}

/** The partition and generation of a consumer name, or undefined. */
export function parseConsumerName(name: string): { partition: number; generation: number } | undefined {
  const m = /^p-(\d+)(?:-g(\d+))?$/.exec(name);
  return m ? { partition: Number(m[1]), generation: Number(m[2] ?? 0) } : undefined;
}

/** Header that marks the engine's own mapping probes (dropped by workers). */
export const PROBE_HEADER = "Ach-Probe";
/** Tenant token of probes; producers cannot use it (ids never start with `_`). */
export const PROBE_TENANT = "_ach";

/**
 * Whether a stored events message (`ach.p.<k>.<tenant>.…`) is one of the
 * engine's own mapping probes: on the reserved tenant and marked. The header
 * alone means nothing: a producer who sets `Ach-Probe` on its own event
 * gets it evaluated (or dead-lettered) like any other.
 */
export function isProbe(subject: string, headers: { get(k: string): string } | undefined): boolean {
  return subject.split(".", 4)[3] === PROBE_TENANT && !!headers?.get(PROBE_HEADER);
}

/** What a webhook is, how it is written down, and the JetStream consumer that drives it. Pure. */
import { randomBytes } from "node:crypto";
import { AckPolicy, DeliverPolicy, type ConsumerConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { ID_TOKEN, UNLOCKED_PREFIX } from "../../events/mod.ts";

/** A registered webhook, as stored in the `ach_webhooks` bucket under `<tenant>.<id>`. */
export type WebhookRecord = {
  id: string;
  tenant: string;
  url: string;
  /** Standard Webhooks signing secret, `whsec_<base64 of 32 random bytes>`; shown once, never listed. */
  secret: string;
  /** Only unlocks of these achievements (absent: every unlock of the tenant). */
  achievements?: string[];
  /** Also backfilled unlocks (marked `backfill: true`); absent or false: they stay quiet. */
  backfill?: boolean;
  enabled: boolean;
  /** Why it was disabled (by hand, or after repeated dead letters); null while enabled. */
  disabled_reason: string | null;
  created_at: string;
  updated_at: string;
};

/** A webhook as listings show it: everything but the secret. */
export type WebhookView = Omit<WebhookRecord, "secret">;

/** The record without its secret. */
export function webhookView(r: WebhookRecord): WebhookView {
  const { secret: _secret, ...rest } = r;
  return rest;
}

/** Webhook ids: `wh_` and 16 lower-case hex characters (64 random bits: an index, not a secret). */
export const WEBHOOK_ID = /^wh_[0-9a-f]{16}$/;
/** Most achievements in one filter. */
export const MAX_FILTER = 100;

/** A webhook request that cannot be honoured; the message names the field and why. */
export class WebhookRequestError extends Error {
  override name = "WebhookRequestError";
}

/** A new webhook id. */
export function newWebhookId(): string {
  return `wh_${randomBytes(8).toString("hex")}`;
}

/** A new Standard Webhooks signing secret (256 bits from the system's CSPRNG). */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

/** The bucket key of a webhook. */
export function webhookKey(tenant: string, id: string): string {
  return `${tenant}.${id}`;
}

/** The durable consumer on `ACH_UNLOCKS` that drives webhook `id`. */
export function webhookConsumerName(id: string): string {
  return id;
}

/**
 * The consumer of a webhook: its tenant's unlocks, from the webhook's
 * creation on (`start`), or from sequence `startSeq` when its delivery
 * rewinds to the ack floor. Acks are explicit (each user's deliveries finish
 * on their own); the ack wait is kept from expiring by `working()` while a
 * delivery retries.
 */
export function webhookConsumerConfig(w: Pick<WebhookRecord, "id" | "tenant" | "created_at">, ackWaitMs: number, startSeq?: number): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: webhookConsumerName(w.id),
    // Read back by parseWebhookConsumer.
    description: `achd webhook ${w.id} of ${w.tenant}`,
    filter_subject: `${UNLOCKED_PREFIX}.${w.tenant}.>`,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(ackWaitMs),
    max_ack_pending: 1000,
    max_deliver: -1,
    ...(startSeq !== undefined ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : { deliver_policy: DeliverPolicy.StartTime, opt_start_time: w.created_at }),
  };
}

/**
 * The webhook a consumer of `ACH_UNLOCKS` drives, read from its name and the
 * description {@link webhookConsumerConfig} gave it; undefined for a
 * consumer that is not a webhook's. `tenant` is undefined when the
 * description does not name one (changed by hand).
 */
export function parseWebhookConsumer(name: string, description = ""): { id: string; tenant?: string } | undefined {
  if (!WEBHOOK_ID.test(name)) return undefined;
  const tenant = /^achd webhook \S+ of (\S+)$/.exec(description)?.[1];
  return tenant === undefined ? { id: name } : { id: name, tenant };
}

/** Checks an achievements filter: a list of 1…{@link MAX_FILTER} ids, or null/absent for none. */
export function checkFilter(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw new WebhookRequestError("achievements: must be a list of achievement ids (or null for every unlock)");
  if (v.length === 0 || v.length > MAX_FILTER) throw new WebhookRequestError(`achievements: give 1 to ${MAX_FILTER} achievement ids (or leave it out for every unlock)`);
  v.forEach((a, i) => {
    if (typeof a !== "string" || !ID_TOKEN.test(a)) throw new WebhookRequestError(`achievements[${i}]: ${JSON.stringify(a)} is not an achievement id (A-Z a-z 0-9 _ -)`);
  });
  return [...new Set(v as string[])];
}

/** Checks a tenant id for a webhook path or command. */
export function checkTenant(tenant: string): string {
  if (!ID_TOKEN.test(tenant)) throw new WebhookRequestError(`tenant: ${JSON.stringify(tenant)} is not a valid tenant id (A-Z a-z 0-9 _ -)`);
  return tenant;
}

/** Whether a webhook takes an unlock of `achievement`. */
export function wants(w: Pick<WebhookRecord, "achievements" | "backfill">, unlock: { achievement_id: string; backfill?: boolean }): boolean {
  if (unlock.backfill === true && w.backfill !== true) return false;
  return !w.achievements || w.achievements.includes(unlock.achievement_id);
}

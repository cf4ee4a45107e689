/**
 * The webhooks of every tenant, in the `ach_webhooks` bucket, each with the
 * durable consumer that drives its deliveries: made with the webhook,
 * removed with it. Used by the API, the CLI and the delivery.
 */
import type { KV } from "@nats-io/kv";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Config } from "../../config/mod.ts";
import { currentEntries, isCasFailure, isNotFound, Streams, WEBHOOK_LOG_PER_WEBHOOK } from "../../nats/mod.ts";
import type { Logger } from "../../util/log.ts";
import { checkWebhookUrl, WebhookAddressError } from "./address.ts";
import { getDeadLetter, listAllDeadLetters, listDeadLetters, logAttempt, logEntry, purgeWebhook, readLog, removeDeadLetter, type WebhookDeadLetter, type WebhookLogEntry } from "./journal.ts";
import { checkFilter, checkTenant, newWebhookId, newWebhookSecret, webhookConsumerConfig, webhookConsumerName, webhookKey, webhookView, WEBHOOK_ID, WebhookRequestError, type WebhookRecord, type WebhookView } from "./record.ts";
import { sendWebhook, signedHeaders } from "./send.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** How long a delivered unlock may stay unacknowledged before JetStream sends it again (kept alive by `working()`). */
export const WEBHOOK_ACK_WAIT_MS = 30_000;
/** Most webhooks per tenant. */
export const MAX_WEBHOOKS_PER_TENANT = 20;

/** The outcome of a redelivery by hand. */
export type Redelivery = { delivered: boolean; status: number | null; latency_ms: number; error?: string };

/** A dead letter as the admin's list shows it: without its payload, with its webhook's URL and state. */
export type WebhookDeadLetterRow = Omit<WebhookDeadLetter, "payload"> & { seq: number; webhook_url: string | null; webhook_enabled: boolean; webhook_disabled_reason: string | null };

/** The webhook is disabled: enable it before redelivering to it. */
export class WebhookDisabledError extends Error {
  override name = "WebhookDisabledError";
}

function only(body: Record<string, unknown>, allowed: readonly string[]): void {
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length) throw new WebhookRequestError(`${extra[0]}: unknown field (a webhook takes ${allowed.join(", ")})`);
}

/** Registered webhooks and their consumers. */
export class WebhookRegistry {
  readonly #kv: KV;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #config: Config;

  constructor(opts: { kv: KV; js: JetStreamClient; jsm: JetStreamManager; config: Config }) {
    this.#kv = opts.kv;
    this.#js = opts.js;
    this.#jsm = opts.jsm;
    this.#config = opts.config;
  }

  /** The bucket (the delivery watches it). */
  get kv(): KV {
    return this.#kv;
  }

  async #url(v: unknown): Promise<string> {
    if (typeof v !== "string" || v.length === 0) throw new WebhookRequestError("url: required, an https:// or http:// URL");
    try {
      return (await checkWebhookUrl(v, this.#config.webhooks.allowPrivate)).href;
    } catch (err) {
      if (err instanceof WebhookAddressError) throw new WebhookRequestError(err.message, { cause: err });
      throw err;
    }
  }

  /**
   * Registers a webhook: checks it (the URL's host resolved to public
   * addresses), stores it with a new secret, then makes its consumer, which
   * starts at the webhook's creation time. Returns the record with its
   * secret: the only time the secret leaves the engine.
   */
  async create(tenant: string, spec: unknown, now = new Date()): Promise<WebhookRecord> {
    checkTenant(tenant);
    if (!spec || typeof spec !== "object" || Array.isArray(spec)) throw new WebhookRequestError('the body must be {"url": "https://…", "achievements": ["…"] (optional), "enabled": true (optional), "backfill": false (optional)}');
    const s = spec as Record<string, unknown>;
    only(s, ["url", "achievements", "enabled", "backfill"]);
    if (s.enabled !== undefined && typeof s.enabled !== "boolean") throw new WebhookRequestError("enabled: must be true or false");
    if (s.backfill !== undefined && typeof s.backfill !== "boolean") throw new WebhookRequestError("backfill: must be true or false");
    const achievements = checkFilter(s.achievements);
    const url = await this.#url(s.url);
    if ((await this.list(tenant)).length >= MAX_WEBHOOKS_PER_TENANT) throw new WebhookRequestError(`tenant ${tenant} has ${MAX_WEBHOOKS_PER_TENANT} webhooks already, the most it may have; remove one first`);
    const at = now.toISOString();
    const record: WebhookRecord = {
      id: newWebhookId(),
      tenant,
      url,
      secret: newWebhookSecret(),
      ...(achievements ? { achievements } : {}),
      ...(s.backfill === true ? { backfill: true } : {}),
      enabled: s.enabled !== false,
      disabled_reason: s.enabled === false ? "created disabled" : null,
      created_at: at,
      updated_at: at,
    };
    await this.#kv.create(webhookKey(tenant, record.id), enc.encode(JSON.stringify(record)));
    try {
      await this.#jsm.consumers.add(Streams.Unlocks, webhookConsumerConfig(record, WEBHOOK_ACK_WAIT_MS));
    } catch (err) {
      // Without its consumer the webhook would never deliver: its record goes too; if that fails as well, both are told.
      try {
        await this.#kv.purge(webhookKey(tenant, record.id));
      } catch (purgeErr) {
        throw new AggregateError([err, purgeErr], `webhook ${record.id} of ${tenant}: its consumer could not be made, nor its record removed again (the secret was never shown): remove it (DELETE …/webhooks/${record.id}) and register it anew`);
      }
      throw err;
    }
    return record;
  }

  /** A tenant's webhooks (without secrets), oldest first. */
  async list(tenant: string): Promise<WebhookView[]> {
    checkTenant(tenant);
    return (await this.#entries(`${tenant}.*`)).map(({ record }) => webhookView(record));
  }

  /** Every webhook with its secret and revision (for the delivery). */
  async all(): Promise<WebhookRecord[]> {
    return (await this.#entries(">")).map((e) => e.record);
  }

  async #entries(pattern: string): Promise<{ record: WebhookRecord; revision: number }[]> {
    return (await currentEntries(this.#kv, pattern))
      .map((e) => ({ record: JSON.parse(dec.decode(e.value)) as WebhookRecord, revision: e.revision }))
      .sort((a, b) => a.record.created_at.localeCompare(b.record.created_at) || a.record.id.localeCompare(b.record.id));
  }

  /** Webhook `id` of `tenant` with its secret, or undefined. */
  async get(tenant: string, id: string): Promise<WebhookRecord | undefined> {
    return (await this.#get(tenant, id))?.record;
  }

  async #get(tenant: string, id: string): Promise<{ record: WebhookRecord; revision: number } | undefined> {
    if (!WEBHOOK_ID.test(id)) return undefined;
    checkTenant(tenant);
    const e = await this.#kv.get(webhookKey(tenant, id));
    return e?.operation === "PUT" ? { record: JSON.parse(dec.decode(e.value)) as WebhookRecord, revision: e.revision } : undefined;
  }

  /**
   * Changes a webhook: its URL (checked as at registration), its filter
   * (null: every unlock) or whether it is enabled. Enabling clears the
   * reason it was disabled for; disabling records `reason`. A
   * compare-and-set, tried again when another writer came first. Undefined
   * when there is no such webhook.
   */
  async update(tenant: string, id: string, patch: unknown, reason = "disabled by hand", now = new Date()): Promise<WebhookView | undefined> {
    if (!patch || typeof patch !== "object" || Array.isArray(patch)) throw new WebhookRequestError('the body must be an object with any of "url", "achievements", "enabled", "backfill"');
    const p = patch as Record<string, unknown>;
    only(p, ["url", "achievements", "enabled", "backfill"]);
    if (Object.keys(p).length === 0) throw new WebhookRequestError('nothing to change: give any of "url", "achievements", "enabled", "backfill"');
    if (p.enabled !== undefined && typeof p.enabled !== "boolean") throw new WebhookRequestError("enabled: must be true or false");
    if (p.backfill !== undefined && typeof p.backfill !== "boolean") throw new WebhookRequestError("backfill: must be true or false");
    const achievements = p.achievements === undefined ? undefined : { value: checkFilter(p.achievements) };
    const url = p.url === undefined ? undefined : await this.#url(p.url);
    const changed = await this.#change(tenant, id, (r) => {
      const next: WebhookRecord = { ...r, updated_at: now.toISOString() };
      if (url !== undefined) next.url = url;
      if (achievements) {
        if (achievements.value) next.achievements = achievements.value;
        else delete next.achievements;
      }
      if (p.backfill === true) next.backfill = true;
      if (p.backfill === false) delete next.backfill;
      if (p.enabled === true) Object.assign(next, { enabled: true, disabled_reason: null });
      if (p.enabled === false && r.enabled) Object.assign(next, { enabled: false, disabled_reason: reason });
      return next;
    });
    return changed && webhookView(changed);
  }

  /**
   * Disables a webhook with `reason` (the delivery, after repeated dead
   * letters), unless it was changed since `seenAt` (the `updated_at` the
   * delivery knew): a hand that re-enabled it meanwhile wins.
   */
  async disable(tenant: string, id: string, reason: string, seenAt?: string): Promise<boolean> {
    const changed = await this.#change(tenant, id, (r) => (!r.enabled || (seenAt && r.updated_at !== seenAt) ? undefined : { ...r, enabled: false, disabled_reason: reason, updated_at: new Date().toISOString() }));
    return changed !== undefined;
  }

  async #change(tenant: string, id: string, fn: (r: WebhookRecord) => WebhookRecord | undefined): Promise<WebhookRecord | undefined> {
    for (let attempt = 0; ; attempt++) {
      const cur = await this.#get(tenant, id);
      if (!cur) return undefined;
      const next = fn(cur.record);
      if (!next) return cur.record;
      try {
        await this.#kv.update(webhookKey(tenant, id), enc.encode(JSON.stringify(next)), cur.revision);
        return next;
      } catch (err) {
        if (!isCasFailure(err) || attempt >= 5) throw err;
      }
    }
  }

  /** Removes a webhook, its consumer, its dead letters and its log; false when there was none. */
  async remove(tenant: string, id: string): Promise<boolean> {
    const cur = await this.#get(tenant, id);
    if (!cur) return false;
    // The record goes first: the delivery then stops, and never makes the consumer again.
    await this.#kv.purge(webhookKey(tenant, id));
    await this.deleteConsumer(id);
    await purgeWebhook(this.#jsm, tenant, id);
    return true;
  }

  /** Deletes webhook `id`'s consumer, if there is one. */
  async deleteConsumer(id: string): Promise<void> {
    await this.#jsm.consumers.delete(Streams.Unlocks, webhookConsumerName(id)).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }

  /** The newest entries of a webhook's delivery log, newest first; undefined when there is no such webhook. */
  async deliveries(tenant: string, id: string, limit = WEBHOOK_LOG_PER_WEBHOOK): Promise<WebhookLogEntry[] | undefined> {
    if (!(await this.#get(tenant, id))) return undefined;
    return readLog(this.#js, tenant, id, limit);
  }

  /** A webhook's dead letters, oldest first; undefined when there is no such webhook. */
  async deadLetters(tenant: string, id: string, opts: { limit?: number; from?: number } = {}): Promise<Awaited<ReturnType<typeof listDeadLetters>> | undefined> {
    if (!(await this.#get(tenant, id))) return undefined;
    return listDeadLetters(this.#js, tenant, id, opts);
  }

  /**
   * Dead letters of every webhook (of `tenant`, or of every tenant), oldest
   * first, each with its webhook's URL and whether it is enabled (a
   * redelivery to a disabled one is refused); `webhook_url` is null for a
   * webhook removed while the list was read.
   */
  async allDeadLetters(opts: { tenant?: string; limit?: number; from?: number } = {}): Promise<WebhookDeadLetterRow[]> {
    if (opts.tenant !== undefined) checkTenant(opts.tenant);
    const [dead, hooks] = await Promise.all([listAllDeadLetters(this.#js, opts), this.#entries(opts.tenant ? `${opts.tenant}.*` : ">")]);
    const byKey = new Map(hooks.map(({ record }) => [`${record.tenant}/${record.id}`, record]));
    return dead.map((d) => {
      const w = byKey.get(`${d.tenant}/${d.webhook_id}`);
      return { ...d, webhook_url: w?.url ?? null, webhook_enabled: w?.enabled ?? false, webhook_disabled_reason: w?.disabled_reason ?? null };
    });
  }

  /**
   * Sends dead letter `seq` again, once, now (signed anew), and removes it
   * from the list when the receiver takes it; a failure leaves it there.
   * Undefined when there is no such webhook; throws
   * `WebhookDeadLetterNotFoundError` for a letter that is not this
   * webhook's, {@link WebhookDisabledError} for a disabled webhook. A
   * delivery-log entry that cannot be written is told to `log`.
   */
  async redeliver(tenant: string, id: string, seq: number, log?: Pick<Logger, "warn">): Promise<Redelivery | undefined> {
    const cur = await this.#get(tenant, id);
    if (!cur) return undefined;
    const w = cur.record;
    const d = await getDeadLetter(this.#jsm, tenant, id, seq);
    if (!w.enabled) throw new WebhookDisabledError(`webhook ${id} is disabled (${w.disabled_reason ?? "no reason given"}); enable it first (PATCH {"enabled": true})`);
    const cfg = this.#config.webhooks;
    const r = await sendWebhook(new URL(w.url), d.payload, signedHeaders(w.secret, d.unlock_id, d.payload), { timeoutMs: cfg.timeout, allowPrivate: cfg.allowPrivate });
    const entry = logEntry(d, d.attempts + 1, r.outcome === "ok" ? "redelivered" : "redelivery_failed", r);
    await logAttempt(this.#js, tenant, id, entry).catch((err: unknown) => log?.warn({ err: String(err), webhook: id, tenant }, "delivery log entry not written"));
    if (r.outcome === "ok") await removeDeadLetter(this.#jsm, seq);
    return { delivered: r.outcome === "ok", status: r.status ?? null, latency_ms: r.latencyMs, ...(r.error ? { error: r.error } : {}) };
  }
}

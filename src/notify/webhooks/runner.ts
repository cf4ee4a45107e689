/**
 * The deliveries of one webhook: its durable consumer on `ACH_UNLOCKS`,
 * a queue per user (one delivery at a time per user, so a user's unlocks
 * arrive in order; other users go on meanwhile), retries with back-off,
 * the dead-letter list when retries run out.
 *
 * Longer than the house's ~300 lines on purpose: the consumer, the per-user
 * queues, the in-progress keep-alive and the retry loop share the messages
 * in hand, and whether one is acknowledged depends on all of them.
 */
import { setMaxListeners } from "node:events";
import type { Agent as HttpAgent } from "node:http";
import type { Agent as HttpsAgent } from "node:https";
import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { Config } from "../../config/mod.ts";
import type { Stats } from "../../metrics/mod.ts";
import { isNotFound, Streams } from "../../nats/mod.ts";
import { unlockOf, type UnlockEvent } from "../../core/mod.ts";
import { parseUnlockedSubject } from "../../events/mod.ts";
import { settlesWithin, sleep } from "../../util/lifecycle.ts";
import type { Logger } from "../../util/log.ts";
import { addDeadLetter, logAttempt, logEntry, type WebhookLogEntry } from "./journal.ts";
import { wants, webhookConsumerConfig, webhookConsumerName, type WebhookRecord } from "./record.ts";
import { WEBHOOK_ACK_WAIT_MS } from "./registry.ts";
import { sendWebhook, signedHeaders, type AttemptResult } from "./send.ts";

const dec = new TextDecoder();

/** First retry pause; it doubles up to {@link retryCap}. */
export const WEBHOOK_RETRY_BASE_MS = 500;
/** Longest pause a `Retry-After` may ask for. */
const MAX_RETRY_AFTER_MS = 3_600_000;

/** Longest pause between retries: an eighth of `retryFor`, from 1 s to 1 h (about 30 attempts in a day). */
export function retryCap(retryForMs: number): number {
  return Math.min(3_600_000, Math.max(1000, Math.floor(retryForMs / 8)));
}

/** The pause before attempt `attempt + 1`: exponential, capped, with jitter (between half and all of it). */
export function backoff(attempt: number, retryForMs: number, random = Math.random): number {
  const d = Math.min(retryCap(retryForMs), WEBHOOK_RETRY_BASE_MS * 2 ** Math.min(attempt - 1, 30));
  return Math.round(d / 2 + (random() * d) / 2);
}

/** What a runner needs from the delivery that owns it. */
export type RunnerDeps = {
  js: JetStreamClient;
  jsm: JetStreamManager;
  config: Config;
  log: Logger;
  agents: { http: HttpAgent; https: HttpsAgent };
  /** False once this process may no longer deliver (the lease lost, or not renewed within the fence). */
  mayDeliver(): boolean;
  /** A delivery went to the dead-letter list; the owner counts them and disables the webhook after too many in a row. */
  onDeadLetter(w: WebhookRecord, last: AttemptResult): void;
  /** A delivery succeeded (resets that count). */
  onDelivered(w: WebhookRecord): void;
  /** Whether the webhook still exists (checked after its consumer was made again). */
  exists(w: WebhookRecord): Promise<boolean>;
  /** Counts attempts by outcome and times each delivery from the unlock's publishing. */
  stats?: Pick<Stats, "webhookAttempts" | "observe">;
};

type Held = { msg: JsMsg; user: string };

/** One webhook's delivery loop. */
export class WebhookRunner {
  #w: WebhookRecord;
  readonly #deps: RunnerDeps;
  readonly #log: Logger;
  #messages: ConsumerMessages | undefined;
  /** Messages received and not yet acknowledged, by stream sequence. */
  readonly #held = new Map<number, Held>();
  /** Each user's stream sequences waiting, oldest first. */
  readonly #queues = new Map<string, number[]>();
  /** Users with a delivery in hand. */
  readonly #active = new Set<string>();
  /** Users waiting for a free slot. */
  readonly #ready: string[] = [];
  /** The users in {@link #ready}, to look them up without a scan. */
  readonly #waiting = new Set<string>();
  readonly #tasks = new Set<Promise<void>>();
  /** Stopping: no new attempts; pauses end at once. */
  readonly #stopping = new AbortController();
  /** Cut short: requests in flight are aborted. Every request listens to it (`webhooks.concurrency` of them, more than Node's default of 10 before it warns). */
  readonly #abort = (() => {
    const c = new AbortController();
    setMaxListeners(0, c.signal);
    return c;
  })();
  #loop: Promise<void> | undefined;
  #workingTimer: NodeJS.Timeout | undefined;
  /** Set when the loop ended by itself (an error): the owner starts the webhook again. */
  failed = false;

  constructor(w: WebhookRecord, deps: RunnerDeps) {
    this.#w = w;
    this.#deps = deps;
    this.#log = deps.log.child({ webhook: w.id, tenant: w.tenant });
  }

  /** Takes a changed URL, filter or secret for the attempts from now on. */
  update(w: WebhookRecord): void {
    this.#w = w;
  }

  /** Starts reading the consumer (made again when missing; rewound to its ack floor when it has messages out). */
  start(): void {
    this.#workingTimer = setInterval(() => {
      // Keeps every held message (queued or retrying) from being sent again while it waits its turn.
      for (const h of this.#held.values()) h.msg.working();
    }, WEBHOOK_ACK_WAIT_MS / 3);
    this.#loop = this.#run().catch((err: unknown) => {
      if (this.#stopping.signal.aborted) return;
      this.failed = true;
      this.#log.warn({ err: String(err) }, "webhook delivery loop failed; it starts again");
    });
  }

  async #open(): Promise<string> {
    const { jsm } = this.#deps;
    const name = webhookConsumerName(this.#w.id);
    let info = await jsm.consumers.info(Streams.Unlocks, name).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (!info) {
      this.#log.warn("webhook consumer missing; creating it again (from the webhook's creation on)");
      info = await jsm.consumers.add(Streams.Unlocks, webhookConsumerConfig(this.#w, WEBHOOK_ACK_WAIT_MS));
    } else if (info.num_ack_pending > 0) {
      // Unlocks another process (or an earlier life of this one) held are delivered again only after the ack wait,
      // behind newer ones: a user's order would break. Starting again at the ack floor sends them first, in order
      // (those acknowledged past the floor come again too: receivers dedup on webhook-id).
      const floor = info.ack_floor.stream_seq;
      await jsm.consumers.delete(Streams.Unlocks, name);
      info = await jsm.consumers.add(Streams.Unlocks, webhookConsumerConfig(this.#w, WEBHOOK_ACK_WAIT_MS, floor > 0 ? floor + 1 : undefined));
      this.#log.info({ from_seq: floor + 1 }, "webhook consumer rewound to its ack floor");
    }
    // Removed while the consumer was being made again: leave nothing behind.
    if (!(await this.#deps.exists(this.#w))) {
      await jsm.consumers.delete(Streams.Unlocks, name).catch(() => undefined);
      throw new Error(`webhook ${this.#w.id} was removed`);
    }
    return name;
  }

  async #run(): Promise<void> {
    const name = await this.#open();
    if (this.#stopping.signal.aborted) return;
    const c = await this.#deps.js.consumers.get(Streams.Unlocks, name);
    this.#messages = await c.consume({ max_messages: 256 });
    if (this.#stopping.signal.aborted) this.#messages.stop();
    for await (const m of this.#messages) {
      if (this.#stopping.signal.aborted) break;
      this.#take(m);
    }
    if (!this.#stopping.signal.aborted) throw new Error("the consumer's subscription ended");
  }

  #take(m: JsMsg): void {
    const had = this.#held.get(m.seq);
    if (had) {
      // Sent again while we hold it (a late working()): ack through the newest delivery.
      had.msg = m;
      return;
    }
    const user = parseUnlockedSubject(m.subject)?.user ?? "_";
    this.#held.set(m.seq, { msg: m, user });
    let q = this.#queues.get(user);
    if (!q) this.#queues.set(user, (q = []));
    q.push(m.seq);
    this.#schedule(user);
  }

  #schedule(user: string): void {
    if (this.#active.has(user) || this.#waiting.has(user)) return;
    this.#ready.push(user);
    this.#waiting.add(user);
    this.#pump();
  }

  #pump(): void {
    while (this.#active.size < this.#deps.config.webhooks.concurrency && this.#ready.length > 0 && !this.#stopping.signal.aborted) {
      const user = this.#ready.shift()!;
      this.#waiting.delete(user);
      this.#active.add(user);
      const task = this.#drain(user).then((emptied) => {
        this.#tasks.delete(task);
        this.#active.delete(user);
        if (emptied) this.#queues.delete(user);
        // Halted (no lease, disabled, NATS away): try again in a while, not in a tight loop; a stop ends it all.
        else if (!this.#stopping.signal.aborted) setTimeout(() => this.#schedule(user), 1000).unref();
        this.#pump();
      });
      this.#tasks.add(task);
    }
  }

  /** Delivers a user's queued unlocks one after another; true when the queue emptied, false when one was left undone. */
  async #drain(user: string): Promise<boolean> {
    const q = this.#queues.get(user)!;
    while (q.length > 0) {
      if (this.#stopping.signal.aborted) return false;
      const seq = q[0]!;
      const done = await this.#deliver(this.#held.get(seq)!).catch((err: unknown) => {
        this.#log.warn({ err: String(err), seq }, "webhook delivery failed; it is tried again");
        return false;
      });
      if (!done) return false;
      q.shift();
      this.#held.delete(seq);
    }
    return true;
  }

  /**
   * One unlock to the webhook, retried until it is taken, retries run out
   * (then it becomes a dead letter), or the runner stops (then it is left
   * unacknowledged and comes again). True when it is finished with (acked).
   */
  async #deliver(h: Held): Promise<boolean> {
    const body = dec.decode(h.msg.data);
    const unlock = unlockOf(body);
    if (!unlock) {
      // Nothing to sign or send (no unlock id): kept as a dead letter at once, as a rejected event is, never retried.
      const error = "not an unlock body (JSON with unlock_id, user_id and achievement_id)";
      await this.#deadLetter(h, { unlock_id: `(seq ${h.msg.seq})`, user_id: h.user, achievement_id: "" }, body, 0, { outcome: "fail", latencyMs: 0, error }, Date.now());
      return true;
    }
    if (!wants(this.#w, unlock)) {
      h.msg.ack();
      return true;
    }
    const cfg = this.#deps.config.webhooks;
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      if (this.#stopping.signal.aborted || !this.#deps.mayDeliver() || !this.#w.enabled) return false;
      const w = this.#w;
      const r = await sendWebhook(new URL(w.url), body, signedHeaders(w.secret, unlock.unlock_id, body), { timeoutMs: cfg.timeout, allowPrivate: cfg.allowPrivate, signal: this.#abort.signal, agents: this.#deps.agents });
      if (this.#abort.signal.aborted) return false;
      const entry = (outcome: WebhookLogEntry["outcome"]) => logEntry(unlock, attempt, outcome, r);
      if (r.outcome === "ok") {
        h.msg.ack();
        this.#journal(entry("delivered"));
        const published = Date.parse(unlock.processed_at);
        if (Number.isFinite(published)) this.#deps.stats?.observe.webhookDelivery(Math.max(0, Date.now() - published) / 1000);
        this.#deps.onDelivered(w);
        return true;
      }
      if (r.outcome === "retry") {
        const pause = r.retryAfterMs !== undefined ? Math.min(r.retryAfterMs, MAX_RETRY_AFTER_MS) : backoff(attempt, cfg.retryFor);
        if (Date.now() + pause - started <= cfg.retryFor) {
          this.#journal(entry("retrying"));
          // A stop ends the pause: the unlock stays unacknowledged and comes again.
          if (!(await sleep(pause, this.#stopping.signal))) return false;
          continue;
        }
      }
      await this.#deadLetter(h, unlock, body, attempt, r, started);
      this.#journal(entry("dead_letter"));
      return true;
    }
  }

  /** Keeps a delivery given up on as a dead letter, then acknowledges it (a crash in between repeats it: same msg id). */
  async #deadLetter(h: Held, unlock: Pick<UnlockEvent, "unlock_id" | "user_id" | "achievement_id">, body: string, attempts: number, r: AttemptResult, started: number): Promise<void> {
    const w = this.#w;
    await addDeadLetter(this.#deps.js, {
      webhook_id: w.id,
      tenant: w.tenant,
      unlock_id: unlock.unlock_id,
      user_id: unlock.user_id,
      achievement_id: unlock.achievement_id,
      unlock_seq: h.msg.seq,
      attempts,
      last_status: r.status ?? null,
      last_error: r.error ?? "",
      first_attempt_at: new Date(started).toISOString(),
      failed_at: new Date().toISOString(),
      payload: body,
    });
    h.msg.ack();
    this.#log.warn({ unlock_id: unlock.unlock_id, attempts, status: r.status, err: r.error }, "webhook delivery given up on; kept as a dead letter");
    this.#deps.onDeadLetter(w, r);
  }

  #journal(e: WebhookLogEntry): void {
    this.#deps.stats?.webhookAttempts.add([e.outcome]);
    logAttempt(this.#deps.js, this.#w.tenant, this.#w.id, e).catch((err: unknown) => this.#log.debug({ err: String(err) }, "delivery log entry not written"));
  }

  /**
   * Stops: nothing new is pulled or attempted, pauses end at once; requests
   * in flight may finish for up to `graceMs`, then they are cut short.
   * What was not acknowledged comes again to whoever delivers next.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopping.abort();
    clearInterval(this.#workingTimer);
    this.#messages?.stop();
    const all = Promise.all([...this.#tasks, this.#loop]);
    if (!(await settlesWithin(all, graceMs))) this.#abort.abort();
    await all;
    await this.#messages?.close().catch(() => undefined);
  }
}

/**
 * Webhook delivery for the whole deployment, in one process at a time:
 * whoever holds the `webhooks` lease runs a {@link WebhookRunner} per
 * enabled webhook; the others wait to take the lease over.
 */
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import type { KV } from "@nats-io/kv";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Stats } from "../../metrics/mod.ts";
import type { Config, Timings } from "../../config/mod.ts";
import { Streams, watchChanges } from "../../nats/mod.ts";
import { background } from "../../util/lifecycle.ts";
import type { Logger } from "../../util/log.ts";
import { LeaseTable, type Held } from "../../cluster/mod.ts";
import { parseWebhookConsumer, type WebhookRecord } from "./record.ts";
import type { WebhookRegistry } from "./registry.ts";
import { WebhookRunner } from "./runner.ts";
import type { AttemptResult } from "./send.ts";

/** Key of the delivery lease in the leases bucket. */
export const WEBHOOK_LEASE_KEY = "webhooks";
/**
 * How often the holder compares the running webhooks with the bucket and
 * sweeps consumers left behind once the bucket's watch has failed (while it
 * works, the watch tells the holder of every change).
 */
const RECONCILE_MS = 5_000;

/** What {@link WebhookDelivery} needs. */
export type WebhookDeliveryOptions = {
  js: JetStreamClient;
  jsm: JetStreamManager;
  registry: WebhookRegistry;
  /** The leases bucket (`ach_leases`, entries expire after `leases.ttl`). Best opened on the control connection. */
  leases: KV;
  /** This process's name in the lease: unique in the deployment (the engine's process id). */
  owner: string;
  config: Config;
  /** `renewEvery`, `fence`, `shutdownGrace` are used. */
  timings: Pick<Timings, "renewEvery" | "fence" | "shutdownGrace">;
  log: Logger;
  /** Counts attempts and times deliveries (the process's metrics). */
  stats?: Pick<Stats, "webhookAttempts" | "observe">;
};

/**
 * Delivers every tenant's unlocks to its webhooks, while this process holds
 * the `webhooks` lease. The lease is renewed every `renewEvery`; once a
 * renewal is more than `fence` old (before anyone else can take it over),
 * no new attempt starts, and a lost lease stops every runner. A process that
 * does not hold the lease tries to take it at the same pace, so a dead
 * holder is replaced within about one lease TTL.
 */
export class WebhookDelivery {
  readonly #o: WebhookDeliveryOptions;
  readonly #log: Logger;
  /** The one lease of webhook delivery: a lease table whose only key is {@link WEBHOOK_LEASE_KEY}. */
  readonly #leases: LeaseTable;
  #held: Held | undefined;
  readonly #runners = new Map<string, WebhookRunner>();
  /** Dead letters in a row, per webhook. */
  readonly #deadInARow = new Map<string, number>();
  readonly #agents = { http: new HttpAgent({ keepAlive: true, maxSockets: 64 }), https: new HttpsAgent({ keepAlive: true, maxSockets: 64 }) };
  #renewedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Fires when the fence closes without a renewal: whatever is in flight is cut short. */
  #fenceTimer: NodeJS.Timeout | undefined;
  #stopWatch: (() => void) | undefined;
  /** The step running now, if any; a step asked for meanwhile runs after it. */
  #running: Promise<void> | undefined;
  #again = false;
  /** Runners being stopped (their webhook disabled or removed). */
  readonly #stopping = new Set<Promise<void>>();
  #lastReconcile = 0;
  #stopped = false;
  /** Set by a change to the bucket, a lease taken, a webhook disabled here, a reconcile that failed or could not start runners. */
  #reconcileAgain = false;
  /** The bucket's watch failed: changes are found by reconciling every {@link RECONCILE_MS} instead. */
  #watchFailed = false;

  constructor(opts: WebhookDeliveryOptions) {
    this.#o = opts;
    this.#log = opts.log.child({ component: "webhooks" });
    this.#leases = new LeaseTable(opts.leases, opts.owner, () => WEBHOOK_LEASE_KEY);
  }

  /** Whether this process delivers now. */
  get delivering(): boolean {
    return this.#held !== undefined;
  }

  /** The webhooks being delivered now, by id. */
  get running(): string[] {
    return [...this.#runners.keys()];
  }

  /** Starts: watches the webhooks bucket and competes for the lease (at once, then every `renewEvery`). */
  async start(): Promise<void> {
    this.#stopWatch = await watchChanges(
      this.#o.registry.kv,
      () => {
        if (!this.#held) return;
        this.#reconcileAgain = true;
        this.#kick();
      },
      (err) => {
        this.#watchFailed = true;
        this.#log.error({ err }, "the webhooks bucket's watch failed; changes reach the delivery within a few seconds");
      },
    );
    this.#kick();
    await this.#running;
    this.#timer = setInterval(() => this.#kick(), this.#o.timings.renewEvery);
  }

  /** Runs a step now, or right after the one running. */
  #kick(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        await background(this.#step(), this.#log, "webhook delivery step failed");
      } while (this.#again && !this.#stopped);
      this.#running = undefined;
    })();
  }

  #mayDeliver = (): boolean => this.#held !== undefined && Date.now() - this.#renewedAt < this.#o.timings.fence && !this.#stopped;

  /** One round: renew or take the lease; while held, bring the runners in line with the bucket. */
  async #step(): Promise<void> {
    if (this.#stopped) return;
    const now = Date.now();
    if (this.#held) {
      let ok = false;
      try {
        ok = await this.#leases.renew(this.#held, Date.now(), Math.max(this.#o.timings.renewEvery, this.#o.timings.fence - (Date.now() - this.#renewedAt)));
      } catch (err) {
        this.#log.warn({ err: String(err) }, "webhook lease renewal failed");
        if (Date.now() - this.#renewedAt < this.#o.timings.fence) return;
      }
      if (ok) this.#renewed(now);
      else {
        this.#held = undefined;
        this.#log.warn({ owner: this.#o.owner }, "webhook delivery lease lost; stopping deliveries");
        await this.#stopRunners(0);
        return;
      }
    } else {
      try {
        this.#held = await this.#leases.acquire(0, now);
      } catch (err) {
        this.#log.warn({ err: String(err) }, "could not ask for the webhook delivery lease");
      }
      if (!this.#held) return;
      this.#renewed(now);
      this.#log.info({ owner: this.#o.owner }, "webhook delivery lease taken; delivering webhooks");
      this.#reconcileAgain = true;
    }
    const due = this.#watchFailed && Date.now() - this.#lastReconcile >= RECONCILE_MS;
    if (this.#reconcileAgain || due || [...this.#runners.values()].some((r) => r.failed)) {
      this.#reconcileAgain = false;
      this.#lastReconcile = Date.now();
      try {
        await this.#reconcile();
      } catch (err) {
        // Nothing else would bring it about again while the watch is quiet: the next step tries again.
        this.#reconcileAgain = true;
        throw err;
      }
    }
  }

  /**
   * A renewal sent at `at` succeeded. If the next one has not succeeded by
   * the fence, every request in flight is cut short there: the lease can
   * expire only later, so two processes never deliver at the same time
   * (the runners start again, from their ack floors, once a renewal
   * succeeds).
   */
  #renewed(at: number): void {
    this.#renewedAt = at;
    clearTimeout(this.#fenceTimer);
    this.#fenceTimer = setTimeout(() => {
      if (this.#runners.size === 0) return;
      this.#log.warn({ fence_ms: this.#o.timings.fence }, "webhook lease not renewed within the fence; cutting deliveries short");
      this.#reconcileAgain = true;
      background(this.#stopRunners(0), this.#log, "stopping webhook runners at the fence");
    }, Math.max(0, at + this.#o.timings.fence - Date.now()));
    this.#fenceTimer.unref();
  }

  /** Starts a runner for each enabled webhook, updates the running ones, stops the rest; removes orphaned consumers. */
  async #reconcile(): Promise<void> {
    const all = await this.#o.registry.all();
    const wanted = new Map(all.filter((w) => w.enabled).map((w) => [w.id, w]));
    for (const [id, runner] of this.#runners) {
      const w = wanted.get(id);
      if (!w || runner.failed) {
        this.#runners.delete(id);
        // Not awaited: a request in flight must not hold up the lease's renewal.
        const stopped = runner.stop(this.#o.timings.shutdownGrace).finally(() => this.#stopping.delete(stopped));
        this.#stopping.add(stopped);
        if (!w) this.#deadInARow.delete(id);
      } else runner.update(w);
    }
    if (!this.#mayDeliver()) {
      // The fence closed (or a stop began): runners start once a renewal succeeds.
      this.#reconcileAgain = true;
      return;
    }
    for (const [id, w] of wanted) {
      if (this.#runners.has(id)) continue;
      const runner = new WebhookRunner(w, {
        js: this.#o.js,
        jsm: this.#o.jsm,
        config: this.#o.config,
        log: this.#log,
        agents: this.#agents,
        mayDeliver: this.#mayDeliver,
        onDeadLetter: (rec, last) => this.#onDeadLetter(rec, last),
        onDelivered: (rec) => this.#deadInARow.delete(rec.id),
        exists: async (rec) => (await this.#o.registry.get(rec.tenant, rec.id)) !== undefined,
        ...(this.#o.stats ? { stats: this.#o.stats } : {}),
      });
      this.#runners.set(id, runner);
      runner.start();
      this.#log.info({ webhook: id, tenant: w.tenant }, "delivering webhook");
    }
    await this.#sweep(new Set(all.map((w) => w.id)));
  }

  /** Deletes webhook consumers whose webhook is gone (removed while its consumer was being made again). */
  async #sweep(known: Set<string>): Promise<void> {
    for await (const ci of this.#o.jsm.consumers.list(Streams.Unlocks)) {
      const of = ci ? parseWebhookConsumer(ci.name, ci.config.description) : undefined;
      if (!ci || !of || known.has(ci.name)) continue;
      // Read again: a webhook registered after the listing has its record before its consumer.
      if (of.tenant !== undefined && (await this.#o.registry.get(of.tenant, ci.name))) continue;
      this.#log.info({ consumer: ci.name }, "deleting the consumer of a removed webhook");
      await this.#o.registry.deleteConsumer(ci.name);
    }
  }

  #onDeadLetter(w: WebhookRecord, last: AttemptResult): void {
    const n = (this.#deadInARow.get(w.id) ?? 0) + 1;
    this.#deadInARow.set(w.id, n);
    const limit = this.#o.config.webhooks.disableAfter;
    if (limit === 0 || n < limit) return;
    this.#deadInARow.delete(w.id);
    const reason = `disabled after ${n} deliveries in a row went to the dead-letter list (last: ${last.error ?? `status ${last.status}`}); fix the receiver, then enable it again`;
    background(
      this.#o.registry.disable(w.tenant, w.id, reason, w.updated_at).then((done) => {
        if (done) this.#log.warn({ webhook: w.id, tenant: w.tenant, reason }, "webhook disabled");
        this.#reconcileAgain = true;
      }),
      this.#log,
      "could not disable a failing webhook",
    );
  }

  async #stopRunners(graceMs: number): Promise<void> {
    const runners = [...this.#runners.values()];
    this.#runners.clear();
    await Promise.all(runners.map((r) => r.stop(graceMs)));
  }

  /**
   * Stops delivering: requests in flight may finish for up to
   * `shutdownGrace`, then they are cut short; what was not acknowledged
   * comes again to the next holder. The lease is given back, so another
   * process takes over at once rather than after the TTL.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    clearTimeout(this.#fenceTimer);
    this.#stopWatch?.();
    await this.#running;
    await Promise.all([this.#stopRunners(this.#o.timings.shutdownGrace), ...this.#stopping]);
    const held = this.#held;
    this.#held = undefined;
    // Not given back: the next holder waits out the lease's TTL instead; said, so that wait is explained.
    if (held) await this.#leases.release(held).catch((err: unknown) => this.#log.warn({ err: String(err) }, "webhook delivery lease not given back; the next holder takes it once it expires"));
    this.#agents.http.destroy();
    this.#agents.https.destroy();
  }
}

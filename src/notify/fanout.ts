import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { unlockOf, type UnlockEvent } from "../core/mod.ts";
import { parseUnlockedSubject } from "../events/mod.ts";
import { Streams } from "../nats/mod.ts";
import type { Logger } from "../util/log.ts";

/** One unlock as read from `ACH_UNLOCKS`: its position in the stream (the SSE id), where it was published, its body. */
export type StreamedUnlock = { seq: number; tenant: string; user: string; body: UnlockEvent; json: string };

type Listener = (u: StreamedUnlock) => void;

/**
 * The one reader of `ACH_UNLOCKS` in an API process: an ordered consumer
 * (it resumes by itself after a reconnect or a server restart) whose
 * messages every listener gets — the dashboard's feed and every SSE client
 * — so a thousand open streams cost one subscription, and each body is
 * parsed once. It starts `backlog` messages before the stream's end, so a
 * listener that wants the newest few (the dashboard) has them at once.
 */
export class UnlockFanout {
  readonly #listeners = new Set<Listener>();
  #messages: ConsumerMessages | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;
  /** Messages passed over because they are not an unlock on an unlock subject (nothing the engine publishes). */
  #skipped = 0;

  constructor(private readonly d: { js: JetStreamClient; jsm: JetStreamManager; log: Logger; backlog?: number }) {}

  /** Gets every unlock read from now on; returns the way to stop. */
  listen(fn: Listener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Starts reading, `backlog` messages before the stream's end. Throws when
   * the stream's end cannot be read: starting anywhere else would replay
   * the whole stream to every listener.
   */
  async start(): Promise<void> {
    const last = (await this.d.jsm.streams.info(Streams.Unlocks)).state.last_seq;
    const c = await this.d.js.consumers.get(Streams.Unlocks, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, last - (this.d.backlog ?? 0) + 1) });
    this.#messages = await c.consume();
    this.#loop = this.#read(this.#messages).catch((err: unknown) => {
      if (!this.#stopped) this.d.log.error({ err }, "the unlock stream's reader stopped: SSE streams and the dashboard's feed get nothing new");
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#messages?.close().catch(() => undefined);
    await this.#loop;
    this.#listeners.clear();
  }

  async #read(messages: ConsumerMessages): Promise<void> {
    for await (const m of messages) {
      const where = parseUnlockedSubject(m.subject);
      const json = m.string();
      const body = where ? unlockOf(json) : undefined;
      if (!where || !body) {
        this.#skipped++;
        this.d.log.warn({ seq: m.seq, subject: m.subject, skipped: this.#skipped }, where ? "not an unlock body in the unlocks stream (JSON with unlock_id, user_id and achievement_id): passed over" : "not an unlock subject in the unlocks stream: passed over");
        continue;
      }
      const u: StreamedUnlock = { seq: m.seq, tenant: where.tenant, user: where.user, body, json };
      for (const fn of this.#listeners) {
        try {
          fn(u);
        } catch (err) {
          this.d.log.warn({ err }, "an unlock listener failed");
        }
      }
    }
  }
}

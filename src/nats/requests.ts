import { JetStreamApiError, type PubAck } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { isCasFailure } from "./errors.ts";
import { ConnectionError, createInbox, headers, NoRespondersError, TimeoutError, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from "@nats-io/transport-node";

type Pending = { resolve: (m: Msg) => void; reject: (e: Error) => void; deadline: number; subject: string };
/** A JetStream API error as the server sends it. */
type ApiError = { code: number; err_code: number; description: string };

const dec = new TextDecoder();

/**
 * JetStream publishes over one reply subscription.
 *
 * nats.js answers each request through a promise with its own timer, and
 * builds an `Error` (with its stack) for every request that completes; on
 * the engine's hot path, where every state write, unlock and record is a
 * request, that was about a sixth of the worker's CPU. Here a request is a
 * map entry: replies come to `<inbox>.<token>`, and one timer expires what
 * is overdue. Errors are the ones nats.js gives (`JetStreamApiError` with
 * the server's code, `NoRespondersError`, `TimeoutError`), so callers and
 * the retry policy treat them alike.
 */
export class JsRequests {
  readonly #nc: NatsConnection;
  readonly #timeout: number;
  readonly #prefix: string;
  readonly #pending = new Map<string, Pending>();
  readonly #sub: Subscription;
  readonly #timer: NodeJS.Timeout;
  #next = 0;

  /** `timeout` and `sweepEvery` (how often overdue requests are failed) come from the engine's timings. */
  constructor(nc: NatsConnection, timeout = 5000, sweepEvery = Math.max(50, Math.min(1000, timeout / 4))) {
    this.#nc = nc;
    this.#timeout = timeout;
    this.#prefix = `${createInbox()}.`;
    this.#sub = nc.subscribe(`${this.#prefix}*`, { callback: (_err, m) => this.#reply(m) });
    // Requests are kept in the order they were made, all with the same timeout: the overdue ones come first.
    this.#timer = setInterval(() => this.#expire(Date.now()), sweepEvery);
    this.#timer.unref();
    void nc.closed().then(() => this.close());
  }

  #reply(m: Msg): void {
    const token = m.subject.slice(this.#prefix.length);
    const p = this.#pending.get(token);
    if (!p) return; // expired already
    this.#pending.delete(token);
    p.resolve(m);
  }

  #expire(now: number): void {
    for (const [token, p] of this.#pending) {
      if (p.deadline > now) break;
      this.#pending.delete(token);
      p.reject(new TimeoutError());
    }
  }

  #request(subject: string, data: Uint8Array, hdrs?: MsgHdrs): Promise<Msg> {
    const token = (this.#next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      this.#pending.set(token, { resolve, reject, deadline: Date.now() + this.#timeout, subject });
      try {
        this.#nc.publish(subject, data, hdrs ? { reply: this.#prefix + token, headers: hdrs } : { reply: this.#prefix + token });
      } catch (err) {
        this.#pending.delete(token);
        reject(err as Error);
      }
    });
  }

  /**
   * Publishes to a stream and waits for its acknowledgement. `msgID` is the
   * stream's duplicate-window id; `lastSubjectSeq` makes it a
   * compare-and-set on the subject's last sequence (0: the subject must
   * have no message), as KV create and update do.
   */
  async publish(subject: string, data: Uint8Array, opts: { msgID?: string; lastSubjectSeq?: number } = {}): Promise<PubAck> {
    let h: MsgHdrs | undefined;
    if (opts.msgID !== undefined || opts.lastSubjectSeq !== undefined) {
      h = headers();
      if (opts.msgID !== undefined) h.set("Nats-Msg-Id", opts.msgID);
      if (opts.lastSubjectSeq !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(opts.lastSubjectSeq));
    }
    const m = await this.#request(subject, data, h);
    if (m.headers?.code === 503) throw new NoRespondersError(subject);
    const ack = JSON.parse(dec.decode(m.data)) as PubAck & { error?: ApiError };
    if (ack.error) throw new JetStreamApiError(ack.error);
    return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate === true, ...(ack.domain ? { domain: ack.domain } : {}) };
  }

  /** Requests waiting for their answer. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Fails what is still waiting and stops. */
  close(): void {
    clearInterval(this.#timer);
    if (!this.#sub.isClosed()) this.#sub.unsubscribe();
    for (const [token, p] of this.#pending) {
      this.#pending.delete(token);
      // A connection state, like nats.js's own requests cut short: retried (see isTransient).
      p.reject(new ConnectionError(`connection closed before ${p.subject} was answered`));
    }
  }
}

/** A stored KV value, as the engine reads it. */
export type KvValue = { value: Uint8Array; revision: number; operation: "PUT" | "DEL" | "PURGE"; length: number };

/** The part of a KV bucket the engine's hot path uses; a nats.js `KV` is one too. */
export interface KvStore {
  get(key: string): Promise<KvValue | null>;
  create(key: string, data: Uint8Array): Promise<number>;
  update(key: string, data: Uint8Array, revision: number): Promise<number>;
  put(key: string, data: Uint8Array): Promise<number>;
}

/**
 * A KV bucket whose writes go through {@link JsRequests}: the same subjects,
 * headers and answers as nats.js's KV, without its per-request cost. Reads,
 * and anything unusual (a create over a deleted key), are the nats.js
 * bucket's. (Reads sent through JsRequests as STREAM.MSG.GET lost unlocks in
 * the three-node cluster test under load, two runs in three, for a reason
 * not found yet; through nats.js none in three.)
 */
export class FastKv implements KvStore {
  readonly #kv: KV;
  readonly #req: JsRequests;
  readonly #prefix: string;

  private constructor(kv: KV, req: JsRequests, bucket: string) {
    this.#kv = kv;
    this.#req = req;
    this.#prefix = `$KV.${bucket}.`;
  }

  static async open(kv: KV, req: JsRequests): Promise<FastKv> {
    return new FastKv(kv, req, (await kv.status()).bucket);
  }

  /** The key's last value (through the stream leader), or null; a deleted key reads as its delete marker. */
  async get(key: string): Promise<KvValue | null> {
    return this.#kv.get(key);
  }

  async create(key: string, data: Uint8Array): Promise<number> {
    try {
      return (await this.#req.publish(this.#prefix + key, data, { lastSubjectSeq: 0 })).seq;
    } catch (err) {
      // The key exists: nats.js's create still succeeds over a delete marker, and fails otherwise.
      if (isCasFailure(err)) return this.#kv.create(key, data);
      throw err;
    }
  }

  async update(key: string, data: Uint8Array, revision: number): Promise<number> {
    return (await this.#req.publish(this.#prefix + key, data, { lastSubjectSeq: revision })).seq;
  }

  async put(key: string, data: Uint8Array): Promise<number> {
    return (await this.#req.publish(this.#prefix + key, data)).seq;
  }
}

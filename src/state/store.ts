import { LRUCache } from "lru-cache";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { decodeState, emptyUserState, encodeState, type UserState } from "./user-state.ts";

/** Someone else wrote the key since we read it; reload and recompute. */
export class ConflictError extends Error {
  override name = "ConflictError";
  constructor(readonly key: string, opts?: ErrorOptions) {
    super(`state of ${key} changed under us (compare-and-set failed)`, opts);
  }
}

/** A user's state with the KV revision it was read at (0 = not stored yet). */
export type Versioned = { state: UserState; revision: number };

/** True for JetStream's "wrong last sequence" answer to a compare-and-set. */
export function isCasFailure(err: unknown): boolean {
  if (err instanceof JetStreamApiError) {
    return err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
  }
  return /wrong last sequence|key exists/i.test(String((err as Error)?.message ?? ""));
}

/**
 * User state in a KV bucket, fronted by a bounded LRU cache. Every write is
 * compare-and-set on the revision last seen, so a writer working from a
 * stale copy (another worker, a paused process) fails instead of
 * overwriting newer state.
 */
export class StateStore {
  readonly #kv: KV;
  readonly #cache: LRUCache<string, Versioned> | undefined;

  constructor(kv: KV, cacheUsers: number) {
    this.#kv = kv;
    this.#cache = cacheUsers > 0 ? new LRUCache({ max: cacheUsers }) : undefined;
  }

  /** The current state of `key`, from the cache or the bucket. */
  async load(key: string): Promise<Versioned> {
    const hit = this.#cache?.get(key);
    if (hit) return hit;
    return this.read(key);
  }

  /** Reads `key` from the bucket, bypassing (and refreshing) the cache. */
  async read(key: string): Promise<Versioned> {
    const e = await this.#kv.get(key);
    const v: Versioned = e && e.operation === "PUT" && e.length > 0 ? { state: decodeState(e.value), revision: e.revision } : { state: emptyUserState(), revision: e?.revision ?? 0 };
    this.#cache?.set(key, v);
    return v;
  }

  /**
   * Writes `state` if the stored revision is still `revision`; returns the
   * new revision. Throws {@link ConflictError} otherwise (and forgets the
   * cached copy).
   */
  async save(key: string, state: UserState, revision: number): Promise<Versioned> {
    try {
      const data = encodeState(state);
      const rev = revision === 0 ? await this.#kv.create(key, data) : await this.#kv.update(key, data, revision);
      const v = { state, revision: rev };
      this.#cache?.set(key, v);
      return v;
    } catch (err) {
      this.#cache?.delete(key);
      if (isCasFailure(err)) throw new ConflictError(key, { cause: err });
      throw err;
    }
  }

  /**
   * Replaces the cached copy of `key` without writing (same revision): used
   * when the stored value carries work the worker has since finished, such
   * as delivered outbox entries.
   */
  remember(key: string, v: Versioned): void {
    this.#cache?.set(key, v);
  }

  /** Drops cached entries (all, or those whose key starts with `prefix`). */
  forget(prefix?: string): void {
    if (!this.#cache) return;
    if (prefix === undefined) return this.#cache.clear();
    for (const k of this.#cache.keys()) if (k.startsWith(prefix)) this.#cache.delete(k);
  }

  /** Drops cached entries whose key matches (e.g. the users of a partition just taken over). */
  forgetWhere(match: (key: string) => boolean): void {
    if (!this.#cache) return;
    for (const k of [...this.#cache.keys()]) if (match(k)) this.#cache.delete(k);
  }

  /** Number of cached users. */
  get cached(): number {
    return this.#cache?.size ?? 0;
  }
}

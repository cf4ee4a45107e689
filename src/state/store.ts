import { LRUCache } from "lru-cache";
import { isCasFailure } from "../nats/mod.ts";
import type { KvStore } from "../nats/requests.ts";
import { decodeState, emptyUserState, encodeState, type UserState } from "../core/mod.ts";

/** Someone else wrote the key since we read it; reload and recompute. */
export class ConflictError extends Error {
  override name = "ConflictError";
  constructor(readonly key: string, opts?: ErrorOptions) {
    super(`state of ${key} changed under us (compare-and-set failed)`, opts);
  }
}

/**
 * A user's stored state cannot be read (not the engine's JSON, or a version
 * it does not know): written by something else, or damaged. Retrying does
 * not help; the message names the user and the way back.
 */
export class CorruptStateError extends Error {
  override name = "CorruptStateError";
  constructor(readonly key: string, opts?: ErrorOptions) {
    const [tenant, user] = key.split(".");
    const why = opts?.cause instanceof Error ? `${opts.cause.name}: ${opts.cause.message}` : String(opts?.cause);
    super(
      `the stored state of user ${user} of tenant ${tenant} (key ${key} in bucket ach_state) cannot be read (${why}). ` +
        `Its events go to the DLQ as processing_failed; rebuild it from the events log (achd users rebuild ${tenant} ${user}, or POST /v1/tenants/${tenant}/users/${user}/rebuild), then redrive the user's dead letters`,
      opts,
    );
  }
}

/** Decodes stored bytes of `key`, naming the user when they cannot be read. */
function decodeStored(key: string, bytes: Uint8Array): UserState {
  try {
    return decodeState(bytes);
  } catch (err) {
    throw new CorruptStateError(key, { cause: err });
  }
}

/** A user's state with the KV revision it was read at (0 = not stored yet). */
export type Versioned = { state: UserState; revision: number };

/** A cached state: its stored bytes (well under half the memory of the object), decoded on use. */
type Cached = { bytes: Uint8Array | undefined; revision: number; delivered?: boolean };

/**
 * User state in a KV bucket, fronted by a bounded LRU cache. Every write is
 * compare-and-set on the revision last seen, so a writer working from a
 * stale copy (another worker, a paused process) fails instead of
 * overwriting newer state.
 *
 * The cache keeps each state as its encoded bytes, not as objects: about
 * 0.9 KB a user instead of 2.3 KB, and nothing for the garbage collector
 * to trace. Decoding a hit costs a few microseconds; a miss costs a round
 * trip.
 */
export class StateStore {
  readonly #kv: KvStore;
  readonly #cache: LRUCache<string, Cached> | undefined;
  /** Loads answered from the cache, and loads that went to the bucket. */
  hits = 0;
  misses = 0;

  /** `cacheUsers` and `cacheBytes` both bound the cache (0 users: no cache). */
  constructor(kv: KvStore, cacheUsers: number, cacheBytes = 64 * 2 ** 20) {
    this.#kv = kv;
    // Each entry is counted as its bytes plus what the key and the entry cost.
    this.#cache = cacheUsers > 0 ? new LRUCache({ max: cacheUsers, maxSize: cacheBytes, sizeCalculation: (v, k) => (v.bytes?.length ?? 0) + k.length + 96 }) : undefined;
  }

  /** The current state of `key`, from the cache or the bucket. */
  async load(key: string): Promise<Versioned> {
    const hit = this.#cache?.get(key);
    if (hit) {
      this.hits++;
      const state = hit.bytes ? decodeStored(key, hit.bytes) : emptyUserState();
      return { state: hit.delivered ? { ...state, outbox: [] } : state, revision: hit.revision };
    }
    this.misses++;
    return this.read(key);
  }

  /**
   * The cached state of `key` without waiting, or undefined when it is not
   * cached, or cached with an outbox (delivered or not: {@link load} sorts
   * that out), or cannot be decoded ({@link load} reports that).
   */
  peek(key: string): Versioned | undefined {
    const hit = this.#cache?.get(key);
    if (!hit || hit.delivered) return undefined;
    let state: UserState;
    try {
      state = hit.bytes ? decodeState(hit.bytes) : emptyUserState();
    } catch {
      return undefined;
    }
    if (state.outbox.length > 0) return undefined;
    this.hits++;
    return { state, revision: hit.revision };
  }

  /** Reads `key` from the bucket, bypassing (and refreshing) the cache. */
  async read(key: string): Promise<Versioned> {
    const e = await this.#kv.get(key);
    const stored = e && e.operation === "PUT" && e.length > 0;
    const revision = stored ? e.revision : (e?.revision ?? 0);
    // Decoded before it is cached: unreadable bytes are not kept, so a state rebuilt
    // in the bucket (achd users rebuild) is read again on the user's next event.
    const state = stored ? decodeStored(key, e.value) : emptyUserState();
    // Copy: the entry's bytes are a view into the message it came in.
    this.#cache?.set(key, { bytes: stored ? e.value.slice() : undefined, revision });
    return { state, revision };
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
      this.#cache?.set(key, { bytes: data, revision: rev });
      return { state, revision: rev };
    } catch (err) {
      this.#cache?.delete(key);
      if (isCasFailure(err)) throw new ConflictError(key, { cause: err });
      throw err;
    }
  }

  /**
   * Notes, without writing, that the outbox stored at `revision` has been
   * delivered: the cached copy loads with an empty outbox (the stored one
   * keeps it until the user's next write, and a worker that reads it from
   * the bucket checks each entry's record).
   */
  outboxDelivered(key: string, revision: number): void {
    const hit = this.#cache?.get(key);
    if (hit && hit.revision === revision) hit.delivered = true;
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

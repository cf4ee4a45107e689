import { LRUCache } from "lru-cache";
import { seenChunkKey, type SeenChunk } from "../core/mod.ts";
import type { KvStore } from "../nats/requests.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The seen-ids archive: full lists of applied event ids moved out of user
 * state, one KV record per chunk (`<tenant>.<user>.<phase>.<n>`). Read only
 * for events whose time falls in an archived chunk's range and that the
 * recent lists do not know — retries of old events, and late events.
 * Chunks never change once written (a rewrite after a crash has the same
 * content), so they are cached.
 */
export class SeenArchive {
  readonly #kv: KvStore;
  readonly #cache: LRUCache<string, ReadonlySet<string>>;

  constructor(kv: KvStore, cacheChunks = 10_000) {
    this.#kv = kv;
    this.#cache = new LRUCache({ max: Math.max(1, cacheChunks) });
  }

  /** Writes a chunk; must complete before the state that refers to it is stored. */
  async write(userKey: string, c: SeenChunk): Promise<void> {
    const key = seenChunkKey(userKey, c.phase, c.n);
    await this.#kv.put(key, enc.encode(JSON.stringify({ ids: c.ids, from: c.from, to: c.to })));
    this.#cache.set(key, new Set(c.ids));
  }

  /** The ids of the given chunks of a user (missing chunks contribute nothing). */
  async load(userKey: string, chunks: readonly { phase: "e" | "o"; n: number }[]): Promise<Set<string>> {
    const out = new Set<string>();
    await Promise.all(
      chunks.map(async ({ phase, n }) => {
        const key = seenChunkKey(userKey, phase, n);
        let ids = this.#cache.get(key);
        if (!ids) {
          const e = await this.#kv.get(key);
          ids = new Set(e?.value.length ? (JSON.parse(dec.decode(e.value)) as { ids: string[] }).ids : []);
          this.#cache.set(key, ids);
        }
        for (const id of ids) out.add(id);
      }),
    );
    return out;
  }
}

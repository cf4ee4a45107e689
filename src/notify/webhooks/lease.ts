import type { KV } from "@nats-io/kv";
import { isCasFailure } from "../../nats/mod.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What the lease's record says: who holds it, since when. */
export type NamedLeaseRecord = { owner: string; since: string };

/**
 * One lease under a fixed key of the leases bucket (`webhooks`), the same
 * scheme as the partition leases (src/cluster/leases.ts): acquire is
 * create-only (or takes back this owner's own record after a crash), renew
 * is a compare-and-set on the revision last written, release a
 * compare-and-set delete; the bucket's TTL frees a lease nobody renews.
 * Kept apart from `LeaseTable`, whose keys are partitions.
 */
export class NamedLease {
  #revision: number | undefined;
  #since = "";

  constructor(
    private readonly kv: KV,
    readonly key: string,
    readonly owner: string,
  ) {}

  /** Whether this process believes it holds the lease (last acquired or renewed, not since lost). */
  get held(): boolean {
    return this.#revision !== undefined;
  }

  /** Takes the lease if it is free or this owner's; false when another owner holds it. */
  async acquire(now: number): Promise<boolean> {
    const since = new Date(now).toISOString();
    const record = enc.encode(JSON.stringify({ owner: this.owner, since } satisfies NamedLeaseRecord));
    try {
      this.#revision = await this.kv.create(this.key, record);
      this.#since = since;
      return true;
    } catch (err) {
      if (!isCasFailure(err)) throw err;
    }
    const e = await this.kv.get(this.key);
    if (!e || e.operation !== "PUT") return false;
    if ((JSON.parse(dec.decode(e.value)) as NamedLeaseRecord).owner !== this.owner) return false;
    try {
      this.#revision = await this.kv.update(this.key, record, e.revision);
      this.#since = since;
      return true;
    } catch (err) {
      if (isCasFailure(err)) return false;
      throw err;
    }
  }

  /**
   * Renews the held lease (giving up after `timeoutMs`); false when it was
   * lost. A renewal given up on that was written after all leaves this
   * tenure's record at a later revision: that is renewed, not lost.
   */
  async renew(timeoutMs?: number): Promise<boolean> {
    if (this.#revision === undefined) return false;
    const record = enc.encode(JSON.stringify({ owner: this.owner, since: this.#since } satisfies NamedLeaseRecord));
    try {
      this.#revision = await this.kv.update(this.key, record, this.#revision, timeoutMs);
      return true;
    } catch (err) {
      if (!isCasFailure(err)) throw err;
    }
    const later = await this.#laterOwnRevision();
    if (later !== undefined) {
      try {
        this.#revision = await this.kv.update(this.key, record, later, timeoutMs);
        return true;
      } catch (err) {
        if (!isCasFailure(err)) throw err;
      }
    }
    this.#revision = undefined;
    return false;
  }

  /** Forgets the lease without touching the bucket (it was lost, or a renewal failed past the fence). */
  drop(): void {
    this.#revision = undefined;
  }

  /** Gives the lease back, if it is still this tenure's. */
  async release(): Promise<void> {
    const revision = this.#revision;
    this.#revision = undefined;
    if (revision === undefined) return;
    try {
      await this.kv.delete(this.key, { previousSeq: revision });
    } catch {
      const later = await this.#laterOwnRevision().catch(() => undefined);
      if (later !== undefined) await this.kv.delete(this.key, { previousSeq: later }).catch(() => undefined);
    }
  }

  /** Who holds the lease now, or undefined. */
  async holder(): Promise<NamedLeaseRecord | undefined> {
    const e = await this.kv.get(this.key);
    return e?.operation === "PUT" ? (JSON.parse(dec.decode(e.value)) as NamedLeaseRecord) : undefined;
  }

  async #laterOwnRevision(): Promise<number | undefined> {
    const e = await this.kv.get(this.key);
    if (!e || e.operation !== "PUT" || this.#revision === undefined || e.revision <= this.#revision) return undefined;
    const cur = JSON.parse(dec.decode(e.value)) as NamedLeaseRecord;
    return cur.owner === this.owner && cur.since === this.#since ? e.revision : undefined;
  }
}

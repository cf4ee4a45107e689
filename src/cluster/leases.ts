import type { KV } from "@nats-io/kv";
import { currentEntries, isCasFailure } from "../nats/mod.ts";

/** A lease this worker holds: the partition, the KV revision it was last written at, and when. */
export type Held = { partition: number; revision: number; renewedAt: number; since: number };

/** What a lease record says. */
export type LeaseRecord = { owner: string; since: string };

/** Who holds a partition, as read from the bucket. */
export type LeaseView = { partition: number; owner: string; since: string; revision: number; ageMs: number };

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Partition leases in a KV bucket whose entries expire after the lease TTL
 * (the bucket's max age): acquire is create-only, renew is compare-and-set
 * on the revision last written, release is a compare-and-set delete. A
 * lease nobody renews disappears on its own, so a dead worker's partitions
 * become free after at most one TTL. The revision a lease was taken at is
 * its epoch: strictly increasing across owners.
 */
export class LeaseTable {
  /** `keyOf` names a lease's key: `p.<partition>` for partitions; one fixed key for a single lease (webhook delivery). */
  constructor(
    private readonly kv: KV,
    readonly workerId: string,
    private readonly keyOf: (partition: number) => string = (p) => `p.${p}`,
  ) {}

  #key(partition: number): string {
    return this.keyOf(partition);
  }

  /**
   * Takes partition `p` if it is free, or if its lease is this worker's own
   * (a previous life of the same worker id, e.g. after a crash). Returns the
   * held lease, or undefined when another worker holds it.
   */
  async acquire(p: number, now: number): Promise<Held | undefined> {
    const record = enc.encode(JSON.stringify({ owner: this.workerId, since: new Date(now).toISOString() } satisfies LeaseRecord));
    try {
      const revision = await this.kv.create(this.#key(p), record);
      return { partition: p, revision, renewedAt: now, since: now };
    } catch (err) {
      if (!isCasFailure(err)) throw err;
    }
    const e = await this.kv.get(this.#key(p));
    if (!e || e.operation !== "PUT") return undefined;
    const cur = JSON.parse(dec.decode(e.value)) as LeaseRecord;
    if (cur.owner !== this.workerId) return undefined;
    try {
      const revision = await this.kv.update(this.#key(p), record, e.revision);
      return { partition: p, revision, renewedAt: now, since: now };
    } catch (err) {
      if (isCasFailure(err)) return undefined;
      throw err;
    }
  }

  /**
   * Renews a held lease (giving up after `timeoutMs`); false when it was
   * lost (expired and taken, or deleted). `renewedAt` moves to the time a
   * renewal that succeeded was sent, never later: the bucket's TTL for the
   * new revision started after it.
   */
  async renew(h: Held, now: number, timeoutMs?: number): Promise<boolean> {
    const record = this.#record(h);
    try {
      h.revision = await this.kv.update(this.#key(h.partition), record, h.revision, timeoutMs);
      h.renewedAt = now;
      return true;
    } catch (err) {
      if (!isCasFailure(err)) throw err;
    }
    // A renewal given up on may still have been written: on a busy event loop its timer fires before its reply is
    // read. Then the key holds this very tenure's record at a later revision, and the lease was never lost: renew on
    // that revision. Another owner, another tenure, or no key at all is a lost lease.
    const revision = await this.#laterOwnRevision(h);
    if (revision === undefined) return false;
    const sentAt = Date.now();
    try {
      h.revision = await this.kv.update(this.#key(h.partition), record, revision, timeoutMs);
      h.renewedAt = sentAt;
      return true;
    } catch (err) {
      if (isCasFailure(err)) return false;
      throw err;
    }
  }

  /** Gives a lease back (only if it is still ours, even at a revision written by a renewal given up on). */
  async release(h: Held): Promise<void> {
    const del = (revision: number) => this.kv.delete(this.#key(h.partition), { previousSeq: revision });
    try {
      await del(h.revision);
    } catch {
      const revision = await this.#laterOwnRevision(h).catch(() => undefined);
      if (revision !== undefined) await del(revision).catch(() => undefined);
    }
  }

  /** The record this tenure writes: the owner and when the lease was taken. */
  #record(h: Held): Uint8Array {
    return enc.encode(JSON.stringify({ owner: this.workerId, since: new Date(h.since).toISOString() } satisfies LeaseRecord));
  }

  /** The key's revision when it is later than `h.revision` and holds this tenure's record (same owner, same `since`). */
  async #laterOwnRevision(h: Held): Promise<number | undefined> {
    const e = await this.kv.get(this.#key(h.partition));
    if (!e || e.operation !== "PUT" || e.revision <= h.revision) return undefined;
    const cur = JSON.parse(dec.decode(e.value)) as LeaseRecord;
    return cur.owner === this.workerId && cur.since === new Date(h.since).toISOString() ? e.revision : undefined;
  }

  /** Every current lease. */
  async list(now: number): Promise<LeaseView[]> {
    const out: LeaseView[] = [];
    for (const e of await currentEntries(this.kv, "p.*")) {
      const r = JSON.parse(dec.decode(e.value)) as LeaseRecord;
      out.push({ partition: Number(e.key.slice(2)), owner: r.owner, since: r.since, revision: e.revision, ageMs: now - e.created.getTime() });
    }
    return out.sort((a, b) => a.partition - b.partition);
  }
}

/**
 * Live workers: each writes `w.<id>` in a bucket whose entries expire after
 * the lease TTL, and renews it as it renews its leases.
 */
export class Membership {
  constructor(
    private readonly kv: KV,
    readonly workerId: string,
  ) {}

  async heartbeat(now: number): Promise<void> {
    await this.kv.put(`w.${this.workerId}`, enc.encode(JSON.stringify({ at: new Date(now).toISOString() })));
  }

  async leave(): Promise<void> {
    await this.kv.delete(`w.${this.workerId}`).catch(() => undefined);
  }

  /** Ids of the live workers (not left, not expired), sorted, each once: every worker must compute the same plan. */
  async live(): Promise<string[]> {
    return (await currentEntries(this.kv, "w.*")).map((e) => e.key.slice(2));
  }
}

/**
 * The partitions worker `me` should own among the live workers: a stable,
 * balanced assignment (partition k goes to the (k mod W)-th live worker in
 * id order), so every worker computes the same plan and each gets P/W,
 * rounded up or down.
 */
export function plannedPartitions(me: string, live: readonly string[], partitions: number): number[] {
  const workers = live.includes(me) ? live : [...live, me].sort();
  const i = workers.indexOf(me);
  const out: number[] = [];
  for (let k = 0; k < partitions; k++) if (k % workers.length === i) out.push(k);
  return out;
}

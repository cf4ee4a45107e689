import type { KV } from "@nats-io/kv";
import { isCasFailure } from "../state/mod.ts";

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
  constructor(
    private readonly kv: KV,
    readonly workerId: string,
  ) {}

  #key(partition: number): string {
    return `p.${partition}`;
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

  /** Renews a held lease (giving up after `timeoutMs`); false when it was lost (expired and taken, or deleted). */
  async renew(h: Held, now: number, timeoutMs?: number): Promise<boolean> {
    const record = enc.encode(JSON.stringify({ owner: this.workerId, since: new Date(h.since).toISOString() } satisfies LeaseRecord));
    try {
      h.revision = await this.kv.update(this.#key(h.partition), record, h.revision, timeoutMs);
      h.renewedAt = now;
      return true;
    } catch (err) {
      if (isCasFailure(err)) return false;
      throw err;
    }
  }

  /** Gives a lease back (only if it is still ours). */
  async release(h: Held): Promise<void> {
    await this.kv.delete(this.#key(h.partition), { previousSeq: h.revision }).catch(() => undefined);
  }

  /** Every current lease. */
  async list(now: number): Promise<LeaseView[]> {
    const out: LeaseView[] = [];
    const keys: string[] = [];
    for await (const k of await this.kv.keys("p.*")) keys.push(k);
    for (const k of keys) {
      const e = await this.kv.get(k);
      if (!e || e.operation !== "PUT") continue;
      const r = JSON.parse(dec.decode(e.value)) as LeaseRecord;
      out.push({ partition: Number(k.slice(2)), owner: r.owner, since: r.since, revision: e.revision, ageMs: now - e.created.getTime() });
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

  /** Ids of the live workers, sorted. */
  async live(): Promise<string[]> {
    const ids: string[] = [];
    // keys() lists live entries only (not deleted, purged or expired ones).
    for await (const k of await this.kv.keys("w.*")) ids.push(k.slice(2));
    return ids.sort();
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

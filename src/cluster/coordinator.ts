import type { Config } from "../config/mod.ts";
import { partitionOf } from "../events/mod.ts";
import type { PartitionWorker } from "../pipeline/mod.ts";
import type { StateStore } from "../state/mod.ts";
import type { Logger } from "../util/log.ts";
import { plannedPartitions, type Held, type LeaseTable, type Membership } from "./leases.ts";

/** What the coordinator needs. */
export type CoordinatorDeps = {
  leases: LeaseTable;
  members: Membership;
  /** Builds a partition worker; `fence` says whether it may still write. */
  makeWorker: (partition: number, fence: () => boolean) => PartitionWorker;
  store: StateStore;
  config: Config;
  log: Logger;
};

type Owned = { lease: Held; worker: PartitionWorker; starting?: boolean };

/** How often leases are renewed: five times a TTL (at least every 100 ms). */
function renewEvery(ttl: number): number {
  return Math.max(100, Math.floor(ttl / 5));
}

/**
 * Decides which partitions this process consumes. Every `ttl/5` it renews
 * its heartbeat and all its leases at once; a lease that cannot be renewed
 * stops its partition at once: when renewal fails outright (taken by
 * another), or when half a TTL has passed without a successful renewal —
 * well before anyone else can acquire it. Separately, every `ttl/3`, it
 * computes the shared plan (partition k to the (k mod W)-th live worker,
 * counting only workers seen live for a whole TTL, so a flapping heartbeat
 * moves nothing), hands over partitions another live worker should have
 * (stop after the step in hand, then release) and takes the free ones it
 * should have.
 */
export class Coordinator {
  readonly #d: CoordinatorDeps;
  readonly #owned = new Map<number, Owned>();
  /** When each live worker was first seen in an unbroken run of heartbeats. */
  readonly #seenSince = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #renewing: Promise<void> | undefined;
  #stopped = false;

  constructor(deps: CoordinatorDeps) {
    this.#d = deps;
  }

  get workerId(): string {
    return this.#d.leases.workerId;
  }

  /** The workers of the partitions held now, by partition. */
  get workers(): PartitionWorker[] {
    return [...this.#owned.entries()].sort((a, b) => a[0] - b[0]).map(([, o]) => o.worker);
  }

  /** Joins, takes this worker's share of the free partitions, and keeps doing so every tick. */
  async start(): Promise<void> {
    const ttl = this.#d.config.leases.ttl;
    await this.#renewals();
    // Renewals run on their own, often (every ttl/5, all leases at once), so that a slow handover or a partition
    // that is slow to start never delays them — not even the first round, which starts every partition in turn
    // while the first ones are already busy: two renewals in a row may fail before the fence (ttl/2) stops writes.
    this.#renewTimer = setInterval(() => void this.#renewals(), renewEvery(ttl));
    await this.tick();
    this.#timer = setInterval(() => void this.tick(), Math.max(200, Math.floor(ttl / 3)));
  }

  /** One round of handovers and acquisitions (never two at once). */
  async tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return this.#ticking;
    this.#ticking = this.#round().finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  /** Heartbeat and lease renewals (never two rounds at once); a lease that is lost or too old stops its partition. */
  async #renewals(): Promise<void> {
    if (this.#renewing || this.#stopped) return this.#renewing;
    this.#renewing = (async () => {
      const { leases, members, config, log } = this.#d;
      const ttl = config.leases.ttl;
      // A renewal that takes longer than the time to the next one is given up.
      const timeout = renewEvery(ttl);
      await members.heartbeat(Date.now()).catch((err: unknown) => log.warn({ err: String(err) }, "heartbeat failed"));
      await Promise.all(
        [...this.#owned].map(async ([p, o]) => {
          const ok = await leases.renew(o.lease, Date.now(), timeout).catch((err: unknown) => {
            log.warn({ partition: p, err: String(err) }, "lease renewal failed");
            return undefined;
          });
          // The worker's fence stopped its writes at renewedAt + ttl/2 at the latest.
          if (ok === false) await this.#letGo(p, o, false, "lease lost; partition stopped");
          else if (ok === undefined && Date.now() - o.lease.renewedAt > ttl / 2) await this.#letGo(p, o, false, "lease not renewed in time; partition stopped");
        }),
      );
    })().finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  async #round(): Promise<void> {
    const { leases, members, config, log } = this.#d;
    const ttl = config.leases.ttl;
    // A worker that stopped itself (its fence tripped) gives the lease back; it is taken again with a rewind.
    for (const [p, o] of [...this.#owned]) if (!o.worker.running && !o.starting) await this.#letGo(p, o, true, "partition stopped itself; lease released");
    if (this.#stopped) return;
    let live: string[];
    try {
      live = await members.live();
    } catch (err) {
      log.warn({ err: String(err) }, "cannot list workers; keeping the current partitions");
      return;
    }
    // A worker counts for the plan once it has been seen live for a whole TTL without a gap: a heartbeat that
    // goes missing for a moment (a slow bucket while the cluster elects a leader) must not move partitions back and forth.
    const seenAt = Date.now();
    for (const id of [...this.#seenSince.keys()]) if (!live.includes(id)) this.#seenSince.delete(id);
    for (const id of live) if (!this.#seenSince.has(id)) this.#seenSince.set(id, seenAt);
    const settled = live.filter((id) => id === this.workerId || seenAt - this.#seenSince.get(id)! >= ttl);
    const plan = new Set(plannedPartitions(this.workerId, settled, config.partitions));
    // Hand over what another live worker should have.
    for (const [p, o] of [...this.#owned]) {
      if (plan.has(p)) continue;
      await this.#letGo(p, o, true, "partition handed over", "info");
    }
    // Take what this worker should have, when it is free.
    for (const p of plan) {
      if (this.#owned.has(p) || this.#stopped) continue;
      const lease = await leases.acquire(p, Date.now()).catch((err: unknown) => {
        log.warn({ partition: p, err: String(err) }, "lease acquisition failed");
        return undefined;
      });
      if (!lease) continue;
      // Another worker may have written these users' state since we cached it.
      this.#d.store.forgetWhere((key) => {
        const [tenant, user] = key.split(".") as [string, string];
        return partitionOf(tenant, user, config.partitions) === p;
      });
      // Writes stop once half a TTL passes without a renewal: the lease cannot have passed to anyone before a full TTL.
      const worker = this.#d.makeWorker(p, () => Date.now() - lease.renewedAt < config.leases.ttl / 2);
      // Owned (and so renewed) while it starts: a rewind may take a while.
      const owned: Owned = { lease, worker, starting: true };
      this.#owned.set(p, owned);
      try {
        await worker.start();
      } catch (err) {
        log.warn({ partition: p, err: String(err) }, "partition did not start; releasing it");
        if (this.#owned.get(p) === owned) this.#owned.delete(p);
        await worker.stop();
        await leases.release(lease);
        continue;
      }
      owned.starting = false;
      if (this.#owned.get(p) !== owned) continue;
      log.info({ partition: p, epoch: lease.revision, since: lease.since }, "partition acquired");
    }
  }

  /**
   * Stops a partition's worker (it finishes the write in hand), gives the
   * lease back if asked, and logs when the worker last wrote: the end of
   * its tenure, which tests compare with the next owner's `since`.
   */
  async #letGo(p: number, o: Owned, release: boolean, why: string, level: "info" | "warn" = "warn"): Promise<void> {
    if (this.#owned.get(p) !== o) return;
    this.#owned.delete(p);
    await o.worker.stop();
    if (release) await this.#d.leases.release(o.lease);
    const fields = { partition: p, epoch: o.lease.revision, lastWriteAt: o.worker.lastWriteAt, lastRenewedAt: o.lease.renewedAt };
    this.#d.log[level](fields, why);
  }

  /** Stops every partition (finishing the step in hand), releases the leases and leaves. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    clearInterval(this.#renewTimer);
    await this.#ticking;
    await this.#renewing;
    const owned = [...this.#owned.values()];
    this.#owned.clear();
    await Promise.all(owned.map((o) => o.worker.stop()));
    await Promise.all(owned.map((o) => this.#d.leases.release(o.lease)));
    await this.#d.members.leave();
  }
}

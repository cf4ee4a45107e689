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
  makeWorker: (partition: number, fence: (partition: number) => boolean) => PartitionWorker;
  store: StateStore;
  config: Config;
  log: Logger;
};

type Owned = { lease: Held; worker: PartitionWorker };

/**
 * Decides which partitions this process consumes. Every `ttl/3` it renews
 * its heartbeat and leases, computes the shared plan (partition k to the
 * (k mod W)-th live worker), hands over partitions another live worker
 * should have (stop after the step in hand, then release) and takes the
 * free ones it should have. A lease that cannot be renewed stops its
 * partition at once: when renewal fails outright (taken by another), or
 * when half a TTL has passed without a successful renewal — well before
 * anyone else can acquire it.
 */
export class Coordinator {
  readonly #d: CoordinatorDeps;
  readonly #owned = new Map<number, Owned>();
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
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

  /** Held partitions with their lease ages. */
  held(now: number): { partition: number; since: number; renewedMsAgo: number }[] {
    return [...this.#owned.values()].map((o) => ({ partition: o.lease.partition, since: o.lease.since, renewedMsAgo: now - o.lease.renewedAt })).sort((a, b) => a.partition - b.partition);
  }

  /** Joins, takes this worker's share of the free partitions, and keeps doing so every tick. */
  async start(): Promise<void> {
    await this.tick();
    const every = Math.max(200, Math.floor(this.#d.config.leases.ttl / 3));
    this.#timer = setInterval(() => void this.tick(), every);
  }

  /** One round of heartbeat, renewals, handovers and acquisitions (never two at once). */
  async tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return this.#ticking;
    this.#ticking = this.#round().finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  async #round(): Promise<void> {
    const { leases, members, config, log } = this.#d;
    const ttl = config.leases.ttl;
    const now = Date.now();
    await members.heartbeat(now).catch((err: unknown) => log.warn({ err: String(err) }, "heartbeat failed"));
    for (const [p, o] of [...this.#owned]) {
      const ok = await leases.renew(o.lease, Date.now(), Math.max(100, Math.floor(ttl / 4))).catch((err: unknown) => {
        log.warn({ partition: p, err: String(err) }, "lease renewal failed");
        return undefined;
      });
      // The worker's fence stopped its writes at renewedAt + ttl/2 at the latest.
      if (ok === false) await this.#letGo(p, o, false, "lease lost; partition stopped");
      else if (ok === undefined && Date.now() - o.lease.renewedAt > ttl / 2) await this.#letGo(p, o, false, "lease not renewed in time; partition stopped");
    }
    // A worker that stopped itself (its fence tripped) gives the lease back; it is taken again with a rewind.
    for (const [p, o] of [...this.#owned]) if (!o.worker.running) await this.#letGo(p, o, true, "partition stopped itself; lease released");
    if (this.#stopped) return;
    let live: string[];
    try {
      live = await members.live();
    } catch (err) {
      log.warn({ err: String(err) }, "cannot list workers; keeping the current partitions");
      return;
    }
    const plan = new Set(plannedPartitions(this.workerId, live, config.partitions));
    // Hand over what another live worker should have.
    for (const [p, o] of [...this.#owned]) {
      if (plan.has(p)) continue;
      await this.#letGo(p, o, true, "partition handed over");
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
      try {
        await worker.start();
      } catch (err) {
        log.warn({ partition: p, err: String(err) }, "partition did not start; releasing it");
        await leases.release(lease);
        continue;
      }
      this.#owned.set(p, { lease, worker });
      log.info({ partition: p, epoch: lease.revision, since: lease.since }, "partition acquired");
    }
  }

  /**
   * Stops a partition's worker (it finishes the write in hand), gives the
   * lease back if asked, and logs when the worker last wrote: the end of
   * its tenure, which tests compare with the next owner's `since`.
   */
  async #letGo(p: number, o: Owned, release: boolean, why: string): Promise<void> {
    this.#owned.delete(p);
    await o.worker.stop();
    if (release) await this.#d.leases.release(o.lease);
    const fields = { partition: p, epoch: o.lease.revision, lastWriteAt: o.worker.lastWriteAt, lastRenewedAt: o.lease.renewedAt };
    if (why === "partition handed over") this.#d.log.info(fields, why);
    else this.#d.log.warn(fields, why);
  }

  /** Stops every partition (finishing the step in hand), releases the leases and leaves. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#ticking;
    const owned = [...this.#owned.values()];
    this.#owned.clear();
    await Promise.all(owned.map((o) => o.worker.stop()));
    await Promise.all(owned.map((o) => this.#d.leases.release(o.lease)));
    await this.#d.members.leave();
  }
}

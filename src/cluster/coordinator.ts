import { setInterval as every } from "node:timers/promises";
import type { Stats } from "../metrics/mod.ts";
import type { Config, Timings } from "../config/mod.ts";
import { background, sleep } from "../util/lifecycle.ts";
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
  /** The derived timings: renewal period, fence, tick, settle time, renewal timeouts. */
  timings: Timings;
  log: Logger;
  /** The engine's signal: aborting it ends the coordinator's loops (as {@link Coordinator.stop} does). */
  signal?: AbortSignal;
  /** Counts renewals (done, failed), leases lost and leases acquired. */
  stats: Pick<Stats, "leaseRenewals" | "leaseRenewalFailures" | "leasesLost" | "leasesAcquired">;
};

/** A partition this worker holds; `wroteBefore` is when earlier workers under the same lease last wrote (see `#resume`). */
type Owned = { lease: Held; worker: PartitionWorker; starting?: boolean; wroteBefore?: number };

/**
 * Decides which partitions this process consumes. Every `ttl/5` it renews
 * its heartbeat and all its leases at once. A partition stops writing once
 * half a TTL has passed without a successful renewal (its fence) — well
 * before anyone else can acquire the lease — and stops for good when a
 * renewal finds the lease taken or gone. A renewal that was only late (a
 * busy event loop, a slow server) loses nothing: when it succeeds, the
 * partition resumes under the same lease. Separately, every `ttl/3`, it
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
  /** Aborted by {@link stop} (or with the engine's signal): the tick and renewal loops end. */
  readonly #abort = new AbortController();
  readonly #signal: AbortSignal;
  #tickLoop: Promise<void> | undefined;
  #renewLoop: Promise<void> | undefined;
  #ticking: Promise<void> | undefined;
  #renewing: Promise<void> | undefined;
  #beating: Promise<void> | undefined;
  /** Partitions whose lease was lost, still finishing the step in hand. */
  readonly #lettingGo = new Set<Promise<void>>();
  #stopped = false;

  constructor(deps: CoordinatorDeps) {
    this.#d = deps;
    this.#signal = deps.signal ? AbortSignal.any([deps.signal, this.#abort.signal]) : this.#abort.signal;
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
    const { log } = this.#d;
    await this.#renewals();
    // The first heartbeat is written before the first plan, so that this worker counts itself among the live ones.
    await this.#beating;
    // Renewals run on their own, often (every ttl/5, all leases at once), so that a slow handover or a partition
    // that is slow to start never delays them — not even the first round, which starts every partition in turn
    // while the first ones are already busy: two renewals in a row may fail before the fence (ttl/2) stops writes.
    this.#renewLoop = background(this.#renewEvery(Date.now()), log, "lease renewal loop failed");
    await this.tick();
    this.#tickLoop = background(this.#tickEvery(), log, "coordinator tick loop failed");
  }

  /**
   * A round every `tick` (ttl/3) on a fixed grid until stopped; a round
   * still running when the next is due is not doubled ({@link tick}).
   */
  async #tickEvery(): Promise<void> {
    try {
      for await (const _ of every(this.#d.timings.tick, undefined, { signal: this.#signal })) {
        void background(this.tick(), this.#d.log, "coordinator round failed");
      }
    } catch (err) {
      if (!this.#signal.aborted) throw err;
    }
  }

  /** One round of handovers and acquisitions (never two at once). */
  async tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return this.#ticking;
    this.#ticking = this.#round().finally(() => (this.#ticking = undefined));
    return this.#ticking;
  }

  /**
   * Runs the next round of renewals a period after the last one started —
   * at once when that round took longer: on a fixed grid, a slow round makes
   * the next tick find it still running and skip, and the leases wait a
   * whole period more.
   */
  async #renewEvery(lastStart: number): Promise<void> {
    while (!this.#stopped) {
      const wait = Math.max(0, lastStart + this.#d.timings.renewEvery - Date.now());
      if (!(await sleep(wait, this.#signal))) return;
      lastStart = Date.now();
      await this.#renewals().catch((err: unknown) => this.#d.log.error({ err }, "lease renewals failed"));
    }
  }

  /** Heartbeat and lease renewals (never two rounds at once); a lease that is lost or too old stops its partition. */
  async #renewals(): Promise<void> {
    if (this.#renewing || this.#stopped) return this.#renewing;
    this.#renewing = (async () => {
      const { leases, members, timings, log } = this.#d;
      // Apart from the renewals (one at a time): a slow heartbeat must neither delay them nor hold up the next round.
      this.#beating ??= members
        .heartbeat(Date.now())
        .catch((err: unknown) => log.warn({ err: String(err) }, "heartbeat failed"))
        .finally(() => (this.#beating = undefined));
      await Promise.all(
        [...this.#owned].map(async ([p, o]) => {
          // Wait for the reply as long as it can still keep the fence open. Giving up sooner helps nothing: the
          // next try writes on the same revision, so it can only succeed if this one did not; and on a busy event
          // loop the timeout fires before a reply that has already arrived is read.
          const timeout = Math.max(timings.renewTimeoutMin, timings.fence - (Date.now() - o.lease.renewedAt));
          const ok = await leases.renew(o.lease, Date.now(), timeout).catch((err: unknown) => {
            log.warn({ partition: p, err: String(err) }, "lease renewal failed");
            return undefined;
          });
          const { stats } = this.#d;
          if (ok) stats.leaseRenewals++;
          else stats.leaseRenewalFailures++;
          if (ok === false) stats.leasesLost++;
          // The worker's fence stopped its writes at renewedAt + ttl/2 at the latest. Not awaited: the partition
          // finishes the step in hand, which must not hold up the next round of the other leases' renewals.
          if (ok === false) this.#letGoAside(p, o, "lease lost; partition stopped");
          // A renewal that failed (a timeout, a server away) is no lost lease: the fence keeps the partition from
          // writing meanwhile, and the next renewal either keeps the lease or finds it taken or gone.
        }),
      );
    })().finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  async #round(): Promise<void> {
    const { leases, members, config, timings, log } = this.#d;
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
    const settled = live.filter((id) => id === this.workerId || seenAt - this.#seenSince.get(id)! >= timings.settle);
    const plan = new Set(plannedPartitions(this.workerId, settled, config.partitions));
    // Hand over what another live worker should have.
    for (const [p, o] of [...this.#owned]) {
      if (plan.has(p)) continue;
      await this.#letGo(p, o, true, "partition handed over", "info");
    }
    // A worker whose fence closed stopped itself; once a renewal has caught up, the lease is fresh again.
    for (const [p, o] of [...this.#owned]) if (!o.worker.running && !o.starting && this.#fence(o.lease)()) await this.#resume(p, o);
    // Take what this worker should have, when it is free.
    for (const p of plan) {
      if (this.#owned.has(p) || this.#stopped) continue;
      const lease = await leases.acquire(p, Date.now()).catch((err: unknown) => {
        log.warn({ partition: p, err: String(err) }, "lease acquisition failed");
        return undefined;
      });
      if (!lease) continue;
      // Another worker may have written these users' state since we cached it.
      this.#forget(p);
      const worker = this.#d.makeWorker(p, this.#fence(lease));
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
      this.#d.stats.leasesAcquired++;
      log.info({ partition: p, epoch: lease.revision, since: lease.since }, "partition acquired");
    }
  }

  /** Whether a partition may write: writes stop once half a TTL passes without a renewal, and the lease cannot pass to anyone before a full TTL. */
  #fence(lease: Held): () => boolean {
    const { fence } = this.#d.timings;
    return () => Date.now() - lease.renewedAt < fence;
  }

  /** Drops the cached state of a partition's users: it may be older than what is stored. */
  #forget(p: number): void {
    const { partitions } = this.#d.config;
    this.#d.store.forgetWhere((key) => {
      const [tenant, user] = key.split(".") as [string, string];
      return partitionOf(tenant, user, partitions) === p;
    });
  }

  /**
   * Starts a partition again under the lease it kept, from its ack floor,
   * after its fence closed and stopped it: the renewals were late, not lost.
   * Handing the lease back instead would make it a move (a new tenure, and a
   * free partition for a moment) for what was a busy moment.
   */
  async #resume(p: number, o: Owned): Promise<void> {
    const { log } = this.#d;
    // Closes the consumer the stopped worker left open.
    await o.worker.stop();
    if (this.#owned.get(p) !== o || this.#stopped) return;
    o.wroteBefore = Math.max(o.wroteBefore ?? 0, o.worker.lastWriteAt);
    // A write in flight when the fence closed may or may not have landed.
    this.#forget(p);
    o.worker = this.#d.makeWorker(p, this.#fence(o.lease));
    o.starting = true;
    try {
      await o.worker.start();
    } catch (err) {
      log.warn({ partition: p, err: String(err) }, "partition did not resume; releasing its lease");
      await this.#letGo(p, o, true, "partition stopped itself; lease released");
      return;
    } finally {
      o.starting = false;
    }
    if (this.#owned.get(p) === o) log.warn({ partition: p, epoch: o.lease.revision, since: o.lease.since, lastWriteAt: o.wroteBefore }, "partition resumed under its lease after its fence closed");
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
    const fields = { partition: p, epoch: o.lease.revision, lastWriteAt: Math.max(o.worker.lastWriteAt, o.wroteBefore ?? 0), lastRenewedAt: o.lease.renewedAt };
    this.#d.log[level](fields, why);
  }

  /** {@link #letGo} without the lease (it is lost), in the background; `stop()` waits for it. */
  #letGoAside(p: number, o: Owned, why: string): void {
    const done: Promise<void> = this.#letGo(p, o, false, why)
      .catch((err: unknown) => this.#d.log.error({ partition: p, err }, "partition did not stop cleanly"))
      .finally(() => this.#lettingGo.delete(done));
    this.#lettingGo.add(done);
  }

  /** Stops every partition (finishing the step in hand), releases the leases and leaves. */
  async stop(): Promise<void> {
    this.#stopped = true;
    // Ends both loops at once (their timers are cleared); a round or a renewal in flight is awaited below.
    this.#abort.abort();
    await this.#tickLoop;
    await this.#renewLoop;
    await this.#ticking;
    await this.#renewing;
    // A heartbeat still in flight would announce this worker again after it left.
    await this.#beating;
    await Promise.all(this.#lettingGo);
    const owned = [...this.#owned.values()];
    this.#owned.clear();
    await Promise.all(owned.map((o) => o.worker.stop()));
    await Promise.all(owned.map((o) => this.#d.leases.release(o.lease)));
    await this.#d.members.leave();
  }
}

import type { JetStreamManager } from "@nats-io/jetstream";
import { partitionConsumers } from "../nats/mod.ts";
import type { LeaseTable, Membership } from "./leases.ts";

/** One partition as `achd status` shows it. */
export type PartitionStatus = {
  partition: number;
  owner: string | null;
  /** Time since the lease was last renewed (ms). */
  lease_age_ms: number | null;
  /** The lease's epoch: the KV revision it was written at. */
  lease_revision: number | null;
  /** Events not yet delivered to the partition's worker. */
  pending: number | null;
  /** Delivered but not yet acknowledged (in flight or held by the reorder window). */
  ack_pending: number | null;
  /** Stream sequence up to which everything is acknowledged. */
  ack_floor: number | null;
};

/** Which worker owns which partition, lag per partition, lease ages. */
export async function clusterStatus(jsm: JetStreamManager, leases: LeaseTable, members: Membership, partitions: number, now: number): Promise<{ workers: string[]; partitions: PartitionStatus[] }> {
  const [workers, held, consumers] = await Promise.all([members.live(), leases.list(now), partitionConsumers(jsm).catch(() => new Map())]);
  const out: PartitionStatus[] = [];
  for (let k = 0; k < partitions; k++) {
    const l = held.find((h) => h.partition === k);
    const info = consumers.get(k);
    out.push({
      partition: k,
      owner: l?.owner ?? null,
      lease_age_ms: l?.ageMs ?? null,
      lease_revision: l?.revision ?? null,
      pending: info?.num_pending ?? null,
      ack_pending: info?.num_ack_pending ?? null,
      ack_floor: info?.ack_floor.stream_seq ?? null,
    });
  }
  return { workers, partitions: out };
}

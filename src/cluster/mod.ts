/** Scale-out: partition leases, worker membership, and the coordinator that balances partitions. */
export { LeaseTable, Membership, plannedPartitions, type Held } from "./leases.ts";
export { Coordinator } from "./coordinator.ts";
export { clusterStatus, type PartitionStatus } from "./status.ts";

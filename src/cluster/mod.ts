/** Scale-out: partition leases, worker membership, and the coordinator that balances partitions. */
export * from "./leases.ts";
export * from "./coordinator.ts";
export * from "./status.ts";

/** `achd status` — live workers, and per partition its owner, lease age and lag. */
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { clusterStatus, LeaseTable, Membership } from "../src/cluster/mod.ts";
import { loadConfig } from "../src/config/mod.ts";
import { Buckets } from "../src/nats/mod.ts";
import { cliConnect, parseCommand, type ExitCode } from "./cli.ts";

const USAGE = `usage: achd status
  which worker owns which partition, lag per partition, lease ages`;

/** Runs `achd status`; returns the exit code. */
export async function statusCmd(args: string[]): Promise<ExitCode> {
  if (!parseCommand({ name: "achd status", usage: USAGE, options: {} }, args)) return 0;
  const config = loadConfig();
  const nc = await cliConnect(config, "achd-status");
  try {
    const jsm = await jetstreamManager(nc);
    const kvm = new Kvm(nc);
    const [leases, workers] = await Promise.all([kvm.open(Buckets.Leases), kvm.open(Buckets.Workers)]);
    const s = await clusterStatus(jsm, new LeaseTable(leases, "status"), new Membership(workers, "status"), config.partitions, Date.now());
    console.log(`workers: ${s.workers.join(", ") || "(none)"}`);
    console.log("partition  owner                 lease age  pending  in flight  ack floor");
    for (const p of s.partitions) {
      const age = p.lease_age_ms === null ? "-" : `${(p.lease_age_ms / 1000).toFixed(1)}s`;
      console.log(`${String(p.partition).padStart(9)}  ${(p.owner ?? "(free)").padEnd(20)}  ${age.padStart(9)}  ${String(p.pending ?? "-").padStart(7)}  ${String(p.ack_pending ?? "-").padStart(9)}  ${String(p.ack_floor ?? "-").padStart(9)}`);
    }
    return 0;
  } finally {
    await nc.close();
  }
}

/**
 * The engine on a real three-node JetStream cluster (R3 streams, consumers
 * and buckets): two workers share the partitions; during the stream one
 * worker is killed with SIGKILL, a new one joins, and the node leading the
 * events stream is killed and restarted. Afterwards the unlocks equal the
 * oracle's, no partition was held by two workers at once (each worker logs
 * when it asked for a lease and when it last let a write through its fence),
 * every partition kept going, and the partitions are spread over the live
 * workers. `ACH_CLUSTER_DEBUG=1` runs the workers at debug level and keeps
 * their logs in the temp folder.
 */
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterStatus, LeaseTable, Membership } from "../../src/cluster/mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { Buckets, ensureTopology, Streams } from "../../src/nats/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { expectOneHolderAtATime, leaseIntervals } from "../helpers/leases.ts";
import { eventually, fixture } from "../helpers/engine.ts";
import { drained, startTestCluster, type TestCluster } from "../helpers/nats.ts";
import { expectOracleUnlocks, generate, publishRetrying } from "../helpers/stream.ts";

const PARTITIONS = 6;
const TTL = 2000;

describe("a three-node JetStream cluster that loses a node", () => {
  let cluster: TestCluster;
  const children: ChildEngine[] = [];
  beforeAll(async () => {
    cluster = await startTestCluster(PARTITIONS);
    const cfg = loadConfig({ ACH_CONFIG: fixture("achd.test.yaml") }, { nats: { url: cluster.url, replicas: 3 }, partitions: PARTITIONS, rules: fixture("rules"), leases: { ttl: TTL } });
    // The cluster elects its JetStream leader first.
    await eventually(() => ensureTopology(cluster.nc, cluster.jsm, cfg).then(() => true), 60_000, "streams and buckets on the cluster");
  });
  afterAll(async () => {
    if (process.env.ACH_CLUSTER_DEBUG) {
      const { writeFileSync } = await import("node:fs");
      const { tmpdir } = await import("node:os");
      writeFileSync(`${tmpdir()}/cluster-workers.log`, children.map((c, i) => c.output.map((l) => `${i} ${l}`).join("\n")).join("\n"));
    }
    for (const c of children) await c.kill("SIGKILL");
    await cluster?.cleanup();
  });

  it("keeps every partition going, with one worker at a time, and loses or doubles nothing", { timeout: 240_000 }, async () => {
    const start = async (id: string) => {
      const c = startChild(cluster.url, "worker", { ACH_WORKER_ID: id, ACH_PARTITIONS: String(PARTITIONS), ACH_REPLICAS: "3", ACH_LEASE_TTL: `${TTL}ms`, LOG_LEVEL: process.env.ACH_CLUSTER_DEBUG ? "debug" : "info" });
      children.push(c);
      await c.waitFor('"msg":"workers started"', 60_000);
      return c;
    };
    const events = generate(41, 1200, 60);
    const chunk = (i: number) => events.slice(i * 300, (i + 1) * 300);
    const x = await start("worker-x");
    const y = await start("worker-y");
    await publishRetrying(cluster.js, chunk(0));
    await x.kill("SIGKILL");
    const xDied = Date.now();
    await publishRetrying(cluster.js, chunk(1));
    const z = await start("worker-z");
    await publishRetrying(cluster.js, chunk(2));
    // Kill the node that leads the events stream, and bring it back.
    const leader = (await cluster.jsm.streams.info(Streams.Events)).cluster?.leader;
    const i = Math.max(0, cluster.names.indexOf(leader ?? "n1"));
    await cluster.bounce(i);
    await publishRetrying(cluster.js, chunk(3));

    const kvm = new Kvm(cluster.nc);
    const leases = new LeaseTable(await kvm.open(Buckets.Leases), "t");
    const members = new Membership(await kvm.open(Buckets.Workers), "t");
    await eventually(() => drained(cluster.jsm, PARTITIONS).catch(() => undefined), 120_000, "every partition drained");
    const status = await eventually(async () => {
      const s = await clusterStatus(cluster.jsm, leases, members, PARTITIONS, Date.now()).catch(() => undefined);
      const count = (w: string) => s?.partitions.filter((p) => p.owner === w).length;
      // Handovers after the drain rewind partitions, so wait for both: balanced, and nothing left to do.
      return s && count("worker-y") === 3 && count("worker-z") === 3 && s.partitions.every((p) => p.pending === 0 && p.ack_pending === 0) ? s : undefined;
    }, 90_000, "partitions balanced over the live workers, with nothing pending");
    expect(status.partitions.map((p) => p.owner).sort()).toEqual(["worker-y", "worker-y", "worker-y", "worker-z", "worker-z", "worker-z"]);

    await expectOracleUnlocks(cluster.nc, cluster.js, events, loadRules(fixture("rules")));

    expectOneHolderAtATime([...leaseIntervals("worker-x", x, xDied), ...leaseIntervals("worker-y", y), ...leaseIntervals("worker-z", z)], PARTITIONS);
  });
});

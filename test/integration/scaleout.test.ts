/**
 * Several worker processes share the partitions through leases: two start,
 * events stream in, one is killed with SIGKILL, a third joins. Afterwards
 * the unlocks equal the oracle's, no partition was held by two workers at
 * once, and the partitions are spread evenly over the live workers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterStatus, LeaseTable, Membership } from "../../src/cluster/mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { Buckets, ensureTopology } from "../../src/nats/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { Kvm } from "@nats-io/kv";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { expectOneHolderAtATime, leaseIntervals } from "../helpers/leases.ts";
import { eventually, fixture } from "../helpers/engine.ts";
import { drained, startTestNats, type TestNats } from "../helpers/nats.ts";
import { expectOracleUnlocks, generate, publishAll } from "../helpers/stream.ts";

const PARTITIONS = 6;
const TTL = 2000;

describe("many workers share the partitions through leases", () => {
  let nats: TestNats;
  const children: ChildEngine[] = [];
  beforeAll(async () => {
    nats = await startTestNats(PARTITIONS);
    const cfg = loadConfig({ ACH_CONFIG: fixture("achd.test.yaml") }, { nats: { url: nats.url }, partitions: PARTITIONS, rules: fixture("rules"), leases: { ttl: TTL } });
    await ensureTopology(nats.nc, nats.jsm, cfg);
  });
  afterAll(async () => {
    for (const c of children) await c.kill("SIGKILL");
    await nats?.cleanup();
  });

  it("keeps every partition with one worker at a time through a kill and a join, and loses or doubles nothing", async () => {
    const env = (id: string) => ({ ACH_WORKER_ID: id, ACH_PARTITIONS: String(PARTITIONS), ACH_LEASE_TTL: `${TTL}ms`, LOG_LEVEL: "info" });
    const start = async (id: string) => {
      const c = startChild(nats.url, "worker", env(id));
      children.push(c);
      await c.waitFor('"msg":"workers started"');
      return c;
    };
    const events = generate(23, 3000, 80);
    const chunk = (i: number) => events.slice(i * 500, (i + 1) * 500);
    const a = await start("worker-a");
    const b = await start("worker-b");
    await publishAll(nats.js, chunk(0));
    // Both hold partitions once the plan has settled.
    await eventually(async () => {
      const s = await clusterStatus(nats.jsm, new LeaseTable(await new Kvm(nats.nc).open(Buckets.Leases), "t"), new Membership(await new Kvm(nats.nc).open(Buckets.Workers), "t"), PARTITIONS, Date.now());
      const owners = new Set(s.partitions.map((p) => p.owner));
      return owners.has("worker-a") && owners.has("worker-b") && !owners.has(null) ? true : undefined;
    }, 20_000, "two workers sharing the partitions");
    await publishAll(nats.js, chunk(1));
    await publishAll(nats.js, chunk(2));
    // Kill one in the middle of the stream; its partitions move after the lease expires.
    await a.kill("SIGKILL");
    const aDied = Date.now();
    await publishAll(nats.js, chunk(3));
    const c = await start("worker-c");
    await publishAll(nats.js, chunk(4));
    await publishAll(nats.js, chunk(5));

    const leases = new LeaseTable(await new Kvm(nats.nc).open(Buckets.Leases), "t");
    const members = new Membership(await new Kvm(nats.nc).open(Buckets.Workers), "t");
    const status = await eventually(async () => {
      const s = await clusterStatus(nats.jsm, leases, members, PARTITIONS, Date.now());
      const count = (w: string) => s.partitions.filter((p) => p.owner === w).length;
      return s.workers.join(",") === "worker-b,worker-c" && count("worker-b") === 3 && count("worker-c") === 3 ? s : undefined;
    }, 30_000, "partitions balanced over the live workers");
    expect(status.partitions.every((p) => p.lease_age_ms !== null && p.lease_age_ms < TTL)).toBe(true);
    await eventually(() => drained(nats.jsm, PARTITIONS), 60_000, "every partition drained");

    // Nothing lost, nothing doubled.
    await expectOracleUnlocks(nats.nc, nats.js, events, loadRules(fixture("rules")));

    // One worker per partition at a time.
    const all = [...leaseIntervals("worker-a", a, aDied), ...leaseIntervals("worker-b", b), ...leaseIntervals("worker-c", c)];
    expectOneHolderAtATime(all, PARTITIONS);
    // worker-a's partitions were taken over by the others.
    expect(all.some((i) => i.worker !== "worker-a" && i.from > aDied)).toBe(true);
  });
});

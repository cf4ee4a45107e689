/**
 * QUARANTINED — not part of `npm test` (see vitest.cluster.config.ts).
 * It found that a consumer created on a replica still catching up after a
 * restart skips messages (fixed: the worker checks where a new consumer
 * starts). Its unlock checks now pass; the check that the logged lease
 * intervals of a partition never overlap still fails in about half of the
 * runs. Run it with `npm run test:cluster`.
 *
 * The engine on a real three-node JetStream cluster (R3 streams, consumers
 * and buckets): two workers share the partitions; during the stream one
 * worker is killed with SIGKILL, a new one joins, and the node leading the
 * events stream is killed and restarted. Afterwards the unlocks equal the
 * oracle's, no partition was held by two workers at once, every partition
 * kept going, and the partitions are spread over the live workers.
 */
import { headers } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterStatus, LeaseTable, Membership } from "../../src/cluster/mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { eventSubject, type EventInput } from "../../src/events/mod.ts";
import { Buckets, ensureTopology, Streams } from "../../src/nats/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { leaseIntervals } from "../helpers/leases.ts";
import { eventually, fixture } from "../helpers/engine.ts";
import { drained, startTestCluster, type TestCluster } from "../helpers/nats.ts";
import { generate, oracle, storedUnlocks } from "../helpers/stream.ts";

const PARTITIONS = 6;
const TTL = 2000;

/** Publishes with retries: a node may be down or a stream leader being elected. */
async function publish(cluster: TestCluster, events: EventInput[]): Promise<void> {
  const enc = new TextEncoder();
  for (const e of events) {
    const h = headers();
    h.set("Nats-Msg-Id", e.event_id);
    for (let attempt = 0; ; attempt++) {
      try {
        await cluster.js.publish(eventSubject(e.tenant_id, e.user_id, e.event_type), enc.encode(JSON.stringify(e)), { headers: h, timeout: 3000 });
        break;
      } catch (err) {
        if (attempt > 100) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}

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
      writeFileSync("/tmp/cluster-workers.log", children.map((c, i) => c.output.map((l) => `${i} ${l}`).join("\n")).join("\n"));
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
    await publish(cluster, chunk(0));
    await x.kill("SIGKILL");
    const xDied = Date.now();
    await publish(cluster, chunk(1));
    const z = await start("worker-z");
    await publish(cluster, chunk(2));
    // Kill the node that leads the events stream, and bring it back.
    const leader = (await cluster.jsm.streams.info(Streams.Events)).cluster?.leader;
    const i = Math.max(0, cluster.names.indexOf(leader ?? "n1"));
    await cluster.bounce(i);
    await publish(cluster, chunk(3));

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

    const want = oracle(events, loadRules(fixture("rules")));
    const stored = (await storedUnlocks(cluster.nc, cluster.js)).map((u) => u.unlock_id);
    if (process.env.ACH_CLUSTER_DEBUG) {
      const records: string[] = [];
      for await (const k of await (await kvm.open(Buckets.Unlocks)).keys()) records.push(k);
      const info = await cluster.jsm.streams.info(Streams.Unlocks);
      console.log("stored", stored.length, "records", records.length, "stream msgs", info.state.messages, "want", [...want.values()].reduce((n, s) => n + Object.keys(s.eval.unlocked).length, 0));
      const dlqInfo = await cluster.jsm.streams.info(Streams.Dlq);
      console.log("dlq messages", dlqInfo.state.messages);
      if (dlqInfo.state.messages > 0) {
        const m = await cluster.jsm.streams.getMessage(Streams.Dlq, { seq: dlqInfo.state.first_seq });
        console.log("first dead letter", m?.header.get("Ach-Reason"), m?.header.get("Ach-Error"));
      }
      const stateKv = await kvm.open(Buckets.State);
      const { decodeState } = await import("../../src/state/mod.ts");
      const { partitionOf } = await import("../../src/events/mod.ts");
      for (const [key, st] of want) {
        for (const [ach, u] of Object.entries(st.eval.unlocked)) {
          if (stored.includes(u.unlock_id)) continue;
          const e = await stateKv.get(key);
          const got = e?.value.length ? decodeState(e.value) : undefined;
          const [t, us] = key.split(".") as [string, string];
          const [tn, un] = key.split(".") as [string, string];
          const oc = await cluster.js.consumers.get(Streams.Events, { filter_subjects: `ach.p.*.${tn}.${un}.>` });
          const seqs: string[] = [];
          const total = (await oc.info()).num_pending;
          if (total > 0) for await (const m of await oc.fetch({ max_messages: total, expires: 3000 })) {
            seqs.push(`${m.seq}:${(m.json() as { event_id: string }).event_id}`);
            if (seqs.length >= total) break;
          }
          console.log("user events", key, seqs.join(" "));
          console.log("missing", key, ach, "partition", partitionOf(t, us, PARTITIONS), "in state:", Boolean(got?.eval.unlocked[ach]), "state seq", got?.seq, "outbox", got?.outbox.length, "rules", JSON.stringify(got?.eval.rules[ach.split(":")[0]!] ?? null), "want", JSON.stringify(st.eval.rules[ach.split(":")[0]!] ?? null));
        }
      }
    }
    expect(new Set(stored).size, "an unlock stored twice").toBe(stored.length);
    expect(stored.sort()).toEqual([...want.values()].flatMap((s) => Object.values(s.eval.unlocked).map((u) => u.unlock_id)).sort());

    const all = [...leaseIntervals("worker-x", x, xDied), ...leaseIntervals("worker-y", y), ...leaseIntervals("worker-z", z)];
    for (let k = 0; k < PARTITIONS; k++) {
      const mine = all.filter((iv) => iv.partition === k).sort((a, b) => a.from - b.from);
      expect(mine.length, `partition ${k} was held`).toBeGreaterThan(0);
      for (let n = 1; n < mine.length; n++) {
        expect(mine[n]!.from, `partition ${k}: ${mine[n]!.worker} took it before ${mine[n - 1]!.worker} let go`).toBeGreaterThanOrEqual(mine[n - 1]!.to);
      }
    }
  });
});

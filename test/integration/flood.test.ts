/**
 * One process runs the API and the workers. Flooding the API with the
 * largest hostile batches it accepts must not starve the workers: no lease
 * lost, no partition moved or stuck, every event published meanwhile
 * applied. (A fence that closes for a moment under load, and reopens under
 * the same lease, is not a lost lease: writes pause, nothing moves.)
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { LeaseTable } from "../../src/cluster/mod.ts";
import type { Engine } from "../../src/engine.ts";
import { Buckets } from "../../src/nats/mod.ts";
import { adminKey, eventually, startTestEngine } from "../helpers/engine.ts";
import { drained, startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

const P = 4;

/** An event as heavy as the limits allow: payload nested 15 levels, ~1,900 keys, under 64 KiB. */
function heavyEvent(i: number): Record<string, unknown> {
  let nested: Record<string, unknown> = { leaf: 1 };
  for (let d = 0; d < 14; d++) nested = { [`k${d}`]: nested, n: d };
  const wide: Record<string, number> = {};
  for (let k = 0; k < 1880; k++) wide[`f${k}`] = k;
  return { ...ev("flood", `f-${i % 50}`, "lesson.completed"), occurred_at: "9999-12-31T23:59:59Z", payload: { nested, wide } };
}

describe("the API cannot starve the workers of its process", () => {
  let nats: TestNats;
  let engine: Engine;
  beforeAll(async () => {
    nats = await startTestNats(P);
    // A short lease makes starvation visible: the fence closes after 2.5 s without a renewal. (Shorter, and the
    // other test files running beside this one on two cores stall the loop long enough by themselves.)
    engine = await startTestEngine(nats.url, { partitions: P, leases: { ttl: "5s" }, http: { rateLimit: { perKey: 0, perTenant: 0 }, quota: { eventsPerSecond: 0, burst: 0 } } });
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  it("keeps every lease and applies every event while four clients send the largest hostile batches", async () => {
    await eventually(() => (engine.workers.length === P ? true : undefined), 20_000, "all partitions held");
    const held = [...engine.workers];
    const tenures = async () => (await leases.list(Date.now())).map((l) => `${l.partition}:${l.owner}:${l.since}`);
    const leases = new LeaseTable(await new Kvm(nats.nc).open(Buckets.Leases), "test");
    const before = await tenures();
    const key = adminKey(engine.config.dataDir);
    // A batch of events that are each near every bound and rejected (far future): the most work per request.
    const batch: unknown[] = [];
    let bytes = 2;
    for (let i = 0; bytes < engine.config.http.maxBodyBytes - 70_000 && batch.length < engine.config.http.maxBatch; i++) {
      const e = heavyEvent(i);
      bytes += JSON.stringify(e).length + 1;
      batch.push(e);
    }
    const body = JSON.stringify(batch);
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const until = Date.now() + 12_000;
    const statuses = new Map<number, number>();
    const client = async () => {
      while (Date.now() < until) {
        const res = await fetch(`${engine.httpUrl}/v1/events`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        await res.arrayBuffer();
      }
    };
    // Meanwhile, ordinary traffic over NATS.
    const events = Array.from({ length: 600 }, (_, i) => ev("steady", `s-${i % 40}`, "lesson.completed"));
    const producer = (async () => {
      for (let i = 0; i < events.length; i += 20) {
        await publishAll(nats.js, events.slice(i, i + 20));
        await new Promise((r) => setTimeout(r, 350));
      }
    })();
    await Promise.all([client(), client(), client(), client(), producer]);
    loop.disable();
    console.log(`flood: ${batch.length} events (${(body.length / 2 ** 20).toFixed(1)} MiB) per request; answers ${JSON.stringify([...statuses])}; event-loop delay p99 ${(loop.percentile(99) / 1e6).toFixed(0)} ms, max ${(loop.max / 1e6).toFixed(0)} ms`);
    expect([...statuses.keys()]).toEqual([200]);
    await eventually(() => drained(nats.jsm, P), 60_000, "every partition drained");
    // The same tenures and worker objects hold the same partitions: no lease was lost, none taken over.
    expect(await tenures()).toEqual(before);
    // Identity, not toEqual (which ignores #private fields): the very same worker objects.
    expect(engine.workers.length).toBe(held.length);
    expect(engine.workers.every((w, i) => w === held[i])).toBe(true);
    await eventually(() => (held.every((w) => w.running) ? true : undefined), 30_000, "every partition running");
    const steadyApplied = await eventually(async () => {
      const res = await fetch(`${engine.httpUrl}/v1/tenants/steady/users/s-0/achievements`, { headers: { authorization: `Bearer ${key}` } });
      const a = (await res.json()) as { in_progress: { achievement_id: string; current: number }[]; unlocked: { achievement_id: string }[] };
      return a.unlocked.some((u) => u.achievement_id === "five-lessons") ? a : undefined;
    });
    expect(steadyApplied.unlocked.map((u) => u.achievement_id)).toContain("first-lesson");
  });
});

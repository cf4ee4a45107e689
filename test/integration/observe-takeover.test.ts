/**
 * The dashboard and `/metrics` keep working while a worker dies: an
 * API-only engine and two worker processes (each with its own `/metrics`
 * listener) share a server; one worker is killed with SIGKILL mid-stream.
 * Throughout, `/v1/dashboard` and every live `/metrics` answer; afterwards
 * the dashboard shows one live worker owning every partition with no lag,
 * the survivor's `/metrics` says it owns them all, and every event was
 * applied once (the unlocks equal the oracle's) and the unlock feed shows
 * the newest of them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/mod.ts";
import type { Engine } from "../../src/engine.ts";
import type { DashboardView } from "../../src/metrics/mod.ts";
import type { PartitionStatus } from "../../src/cluster/mod.ts";
import { ensureTopology } from "../../src/nats/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { apiFetch, eventually, fixture, startTestEngine } from "../helpers/engine.ts";
import { drained, startTestNats, type TestNats } from "../helpers/nats.ts";
import { expectOracleUnlocks, generate, publishAll, storedUnlocks } from "../helpers/stream.ts";

const PARTITIONS = 4;
const TTL = 2000;
type Dashboard = DashboardView & { partitions: PartitionStatus[] };

/** A `/metrics` text's value of one unlabelled series (`name{process="…"}`). */
function gauge(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
}

describe("dashboard and metrics through a worker's death", () => {
  let nats: TestNats;
  let api: Engine;
  const children: ChildEngine[] = [];
  beforeAll(async () => {
    nats = await startTestNats(PARTITIONS);
    const cfg = loadConfig({ ACH_CONFIG: fixture("achd.test.yaml") }, { nats: { url: nats.url }, partitions: PARTITIONS, rules: fixture("rules"), leases: { ttl: TTL } });
    await ensureTopology(nats.nc, nats.jsm, cfg);
    api = await startTestEngine(nats.url, { partitions: PARTITIONS, worker: { enabled: false }, leases: { ttl: TTL } });
  });
  afterAll(async () => {
    for (const c of children) await c.kill("SIGKILL");
    await api?.stop();
    await nats?.cleanup();
  });

  it("answers throughout, and then shows the survivor owning every partition", { timeout: 120_000 }, async () => {
    const start = async (id: string) => {
      const c = startChild(nats.url, "worker", { ACH_WORKER_ID: id, ACH_PARTITIONS: String(PARTITIONS), ACH_LEASE_TTL: `${TTL}ms` });
      children.push(c);
      await c.waitFor('"msg":"serving /metrics"');
      const line = c.output.find((l) => l.includes('"msg":"serving /metrics"'))!;
      return { child: c, url: (JSON.parse(line) as { url: string }).url };
    };
    const dashboard = async () => {
      const res = await apiFetch(api, "/v1/dashboard");
      expect(res.status).toBe(200);
      return (await res.json()) as Dashboard;
    };
    const a = await start("worker-a");
    const b = await start("worker-b");
    await eventually(async () => {
      const d = await dashboard();
      const owners = new Set(d.partitions.map((p) => p.owner));
      return owners.has("worker-a") && owners.has("worker-b") && d.processes.filter((p) => p.worker).length === 2 ? d : undefined;
    }, 30_000, "both workers on the dashboard, sharing the partitions");

    // Poll every endpoint all along: none may fail while a worker dies and its partitions move.
    const failures: string[] = [];
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const answers = await Promise.all([apiFetch(api, "/v1/dashboard").then((r) => ["dashboard", r.status] as const), apiFetch(api, "/metrics").then((r) => ["api /metrics", r.status] as const), fetch(b.url).then((r) => ["worker-b /metrics", r.status] as const)]).catch((err: unknown) => [["poll", String(err)] as const]);
        for (const [what, status] of answers) if (status !== 200) failures.push(`${what}: ${status}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();

    const events = generate(31, 1200, 60);
    await publishAll(nats.js, events.slice(0, 400));
    await a.child.kill("SIGKILL");
    await publishAll(nats.js, events.slice(400, 800));
    await eventually(async () => {
      const d = await dashboard();
      return d.partitions.every((p) => p.owner === "worker-b") ? d : undefined;
    }, 30_000, "worker-b owning every partition on the dashboard");
    await publishAll(nats.js, events.slice(800));
    await eventually(() => drained(nats.jsm, PARTITIONS), 60_000, "every partition drained");
    polling = false;
    await poll;
    expect(failures).toEqual([]);

    // worker-a stops counting as live once its snapshots stop; worker-b reports every partition as its own, with no lag.
    const d = await eventually(async () => {
      const v = await dashboard();
      return v.processes.filter((p) => p.worker).map((p) => p.id).join() === "worker-b" && v.partitions.every((p) => p.pending === 0) ? v : undefined;
    }, 30_000, "the dashboard showing worker-b alone, nothing pending");
    expect(d.processes.find((p) => p.id === "worker-b")?.partitions.sort()).toEqual([0, 1, 2, 3]);
    const text = await (await fetch(b.url)).text();
    expect(gauge(text, "achd_partitions_owned")).toBe(PARTITIONS);
    expect(gauge(text, "achd_leases_acquired_total")).toBeGreaterThan(PARTITIONS / 2);

    // Every event applied once: the unlocks equal the oracle's; the feed shows the newest of them (from the stream,
    // whoever published them).
    await expectOracleUnlocks(nats.nc, nats.js, events, loadRules(fixture("rules")));
    const stored = new Set((await storedUnlocks(nats.nc, nats.js)).map((u) => u.unlock_id));
    expect(d.recent_unlocks.length).toBe(Math.min(50, stored.size));
    for (const u of d.recent_unlocks) expect(stored.has(u.unlock_id)).toBe(true);
  });
});

import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import type { Engine } from "../../src/engine.ts";
import { loadRules, unlockId } from "../../src/rules/mod.ts";
import { Streams } from "../../src/nats/mod.ts";
import { reconcile, replayStream } from "../../src/replay/mod.ts";
import { simulate, unlockLine } from "../../src/sim/mod.ts";
import { eventually, startTestEngine } from "../helpers/engine.ts";
import { comparable, goldenFixtures } from "../helpers/golden.ts";
import { drained, startTestNats, type TestNats } from "../helpers/nats.ts";
import { publishAll, storedUnlocks } from "../helpers/stream.ts";
import type { EventInput } from "../../src/events/mod.ts";

const fixtures = goldenFixtures();
/**
 * Fixture times are fixed and some lie ahead of the day a test runs (the
 * latest is 2027-01-02): the engine, replay and the simulator all get a
 * horizon wide enough for every fixture, and so decide alike.
 */
const limits = { futureSkew: 3650 * 86_400_000 };
const byUser = (list: Record<string, unknown>[]) => {
  const m = new Map<string, string[]>();
  for (const u of list) m.set(String(u.user_id), [...(m.get(String(u.user_id)) ?? []), JSON.stringify(comparable(u))]);
  for (const v of m.values()) v.sort();
  return Object.fromEntries([...m].sort());
};

describe("golden fixtures", () => {
  it("exist, one per feature", () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(20);
  });

  describe.each(fixtures.map((f) => [f.name, f] as const))("%s through the simulator", (_name, f) => {
    it("produces exactly the expected unlocks, in order", () => {
      const dir = mkdtempSync(join(tmpdir(), "achd-golden-"));
      try {
        writeFileSync(join(dir, "rules.yaml"), stringify({ tenant: f.tenant, rules: f.rules }));
        const sim = simulate(f.events, loadRules(dir), 1000, [], { limits });
        expect(sim.rejected).toEqual([]);
        expect(sim.unlocks.map((u) => comparable(unlockLine(u) as Record<string, unknown>))).toEqual(f.expected);
        for (const u of sim.unlocks) expect(u.unlock_id).toBe(unlockId(f.tenant, u.user_id, u.achievement_id, u.tier, u.occurrence));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe("through the real pipeline", () => {
    let nats: TestNats;
    let engine: Engine;
    let rulesDir: string;
    beforeAll(async () => {
      rulesDir = mkdtempSync(join(tmpdir(), "achd-golden-rules-"));
      for (const f of fixtures) writeFileSync(join(rulesDir, `${f.name}.yaml`), stringify({ tenant: f.tenant, rules: f.rules }));
      nats = await startTestNats(4);
      engine = await startTestEngine(nats.url, { rules: rulesDir, http: { enabled: false }, limits });
      // Each fixture's events in file order (one connection keeps publish order).
      await publishAll(nats.js, fixtures.flatMap((f) => f.events) as EventInput[]);
      await eventually(() => drained(nats.jsm, 4), 60_000, "all partitions drained");
    });
    afterAll(async () => {
      await engine?.stop();
      await nats?.cleanup();
      rmSync(rulesDir, { recursive: true, force: true });
    });

    it("agrees with every fixture's expected unlocks", async () => {
      const stored = (await storedUnlocks(nats.nc, nats.js)) as unknown as Record<string, unknown>[];
      for (const f of fixtures) {
        const got = stored.filter((u) => u.tenant_id === f.tenant);
        expect(byUser(got), f.name).toEqual(byUser(f.expected));
      }
    });

    it("replays the stored stream to the unlocks the workers recorded, on one thread and on a pool, identically", async () => {
      const opts = { book: loadRules(rulesDir), maxBytes: 65_536, partitions: 4, recentIds: 64, limits };
      const one = await replayStream(nats.js, nats.jsm, { ...opts, threads: 1 });
      const pool = await replayStream(nats.js, nats.jsm, { ...opts, threads: 3 });
      // Every stored event (publish retries in the fixtures were dropped by the stream's duplicate window).
      const events = (await nats.jsm.streams.info(Streams.Events)).state.messages;
      expect(one).toMatchObject({ events, threads: 1 });
      expect(pool).toMatchObject({ events, threads: 3, users: one.users, rejected: one.rejected, duplicates: one.duplicates });
      expect(pool.unlocks).toEqual(one.unlocks);
      const diff = await reconcile(nats.js, nats.jsm, pool.unlocks);
      expect(diff.notRecorded.map((u) => u.unlock_id)).toEqual([]);
      expect(diff.recordedOnly).toEqual([]);
      expect(diff.recorded).toBe(fixtures.reduce((n, f) => n + f.expected.length, 0));
    });
  });
});

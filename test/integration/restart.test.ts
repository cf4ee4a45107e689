import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadRules } from "../../src/rules/mod.ts";
import { apiFetch, eventually, fixture, startTestEngine } from "../helpers/engine.ts";
import { drained, startTestNats, type TestNats } from "../helpers/nats.ts";
import { generate, oracle, publishAll, storedUnlocks } from "../helpers/stream.ts";

describe("stop and start again in the middle of a stream", () => {
  let nats: TestNats;
  beforeAll(async () => {
    nats = await startTestNats(4);
  });
  afterAll(async () => {
    await nats?.cleanup();
  });

  it("continues from the stored state: nothing lost, nothing doubled", async () => {
    const events = generate(11, 4000, 50);
    let engine = await startTestEngine(nats.url);
    await publishAll(nats.js, events.slice(0, 2000));
    // Stop while the workers are busy, publish more while nothing runs, start again.
    await new Promise((r) => setTimeout(r, 50));
    await engine.stop();
    await publishAll(nats.js, events.slice(2000));
    engine = await startTestEngine(nats.url);
    try {
      await eventually(() => drained(nats.jsm, 4), 60_000, "all partitions drained");
      // The second engine did the work published while nothing ran.
      expect(engine.stats.received).toBeGreaterThanOrEqual(2000);
      const want = oracle(events, loadRules(fixture("rules")));
      for (const [key, state] of want) {
        const [tenant, user] = key.split(".");
        const res = await apiFetch(engine, `/v1/tenants/${tenant}/users/${user}/achievements`);
        const got = (await res.json()) as { unlocked: { unlock_id: string; unlocked_at: string }[] };
        const wantUnlocks = Object.values(state.eval.unlocked).map((u) => ({ unlock_id: u.unlock_id, unlocked_at: u.unlocked_at }));
        expect(got.unlocked.map((u) => ({ unlock_id: u.unlock_id, unlocked_at: u.unlocked_at })).sort((a, b) => a.unlock_id.localeCompare(b.unlock_id)), key).toEqual(
          wantUnlocks.sort((a, b) => a.unlock_id.localeCompare(b.unlock_id)),
        );
      }
      const stored = (await storedUnlocks(nats.nc, nats.js)).map((u) => u.unlock_id);
      expect(new Set(stored).size).toBe(stored.length);
      expect(stored.length).toBe([...want.values()].reduce((n, s) => n + Object.keys(s.eval.unlocked).length, 0));
    } finally {
      await engine.stop();
    }
  });
});

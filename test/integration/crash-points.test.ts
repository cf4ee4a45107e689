import { UnlockRecords } from "../../src/pipeline/mod.ts";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Buckets, ensureTopology } from "../../src/nats/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { decodeState } from "../../src/core/mod.ts";
import type { CrashPoint } from "../../src/util/failpoint.ts";
import { startChild } from "../helpers/child.ts";
import { eventually, fixture, testConfig } from "../helpers/engine.ts";
import { drained, startTestNats, type TestNats } from "../helpers/nats.ts";
import { generate, oracle, publishAll, storedUnlocks } from "../helpers/stream.ts";

const PARTITIONS = 4;

/**
 * Kills a worker at exact points between its writes (ACH_CRASH_AT, see
 * src/util/failpoint.ts), each after its events were published and before
 * they were acknowledged, then lets a fresh worker drain the stream: the
 * states and unlocks must be exactly the oracle's, each unlock once.
 */
describe("kill -9 between a worker's writes", () => {
  let nats: TestNats;
  beforeAll(async () => {
    nats = await startTestNats(PARTITIONS);
    await ensureTopology(nats.nc, nats.jsm, testConfig(nats.url));
  });
  afterAll(async () => {
    await nats?.cleanup();
  });

  it("recovers the oracle's states and unlocks after kills after a state write, a deferred write and an unlock's publish", async () => {
    const events = generate(4242, 3000, 40);
    // Each round: new events, a worker armed to die at the n-th pass through one point; then the next round.
    const rounds: [CrashPoint, number][] = [
      ["state-written", 3],
      ["deferred-written", 12],
      ["unlock-published", 2],
      ["state-written", 15],
      ["deferred-written", 3],
      ["unlock-published", 9],
    ];
    const chunk = Math.ceil(events.length / rounds.length);
    for (const [r, [point, n]] of rounds.entries()) {
      await publishAll(nats.js, events.slice(r * chunk, (r + 1) * chunk));
      const child = startChild(nats.url, "worker", { ACH_CRASH_AT: `${point}:${n}` });
      try {
        await child.waitFor(`killing the process at ${point}`, 60_000);
      } finally {
        await child.kill();
      }
      expect(child.process.signalCode, `round ${r}: the worker died at ${point}`).toBe("SIGKILL");
      console.log(`round ${r}: killed at ${point}:${n}`);
    }
    const last = startChild(nats.url);
    try {
      await last.waitFor('"msg":"ready: ');
      await eventually(() => drained(nats.jsm, PARTITIONS), 60_000, "all partitions drained");
    } finally {
      await last.kill("SIGTERM");
    }

    const want = oracle(events, loadRules(fixture("rules")));
    const kv = await new Kvm(nats.nc).open(Buckets.State);
    for (const [key, state] of want) {
      if (Object.keys(state.eval.rules).length === 0) continue;
      const e = await kv.get(key);
      expect(e?.value.length ? decodeState(e.value).eval : undefined, `state of ${key}`).toEqual(state.eval);
    }
    const ids = (await storedUnlocks(nats.nc, nats.js)).map((u) => u.unlock_id).sort();
    const wantIds = [...want.values()].flatMap((s) => Object.values(s.eval.unlocked).map((u) => u.unlock_id)).sort();
    expect(wantIds.length).toBeGreaterThan(20);
    expect(new Set(ids).size, "no unlock_id stored twice").toBe(ids.length);
    expect(ids).toEqual(wantIds);
    expect((await new UnlockRecords(nats.js, nats.jsm).keys()).length, "one message per unlock subject").toBe(wantIds.length);
  }, 300_000);
});

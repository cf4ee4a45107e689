/** The metrics' bounds and helpers: achievements kept apart per tenant, the shared answer cache, a swallowed failure reported, unlock writes counted by the sink. */
import { JetStreamApiError } from "@nats-io/jetstream";
import { JsApiCodes } from "../../src/nats/errors.ts";
import { describe, expect, it } from "vitest";
import { EngineMetrics, Stats } from "../../src/metrics/mod.ts";
import { UnlockSink } from "../../src/pipeline/unlocks.ts";
import { cachedFor } from "../../src/util/coalesce.ts";
import { answerWithin } from "../../src/util/lifecycle.ts";

describe("Stats.unlock", () => {
  it("keeps a tenant's first maxAchievements achievements apart and counts the rest as other", () => {
    const s = new Stats(2, 2);
    for (const a of ["a", "b", "c", "d", "a"]) s.unlock("t1", a);
    s.unlock("t2", "z");
    // A third tenant is beyond maxTenants: it and its achievements are other.
    s.unlock("t3", "a");
    const by = Object.fromEntries(s.unlocksBy.entries().map((e) => [e.labels.join("/"), e.value]));
    expect(by).toEqual({ "t1/a": 2, "t1/b": 1, "t1/other": 2, "t2/z": 1, "other/other": 1 });
    expect(s.unlocks).toBe(7);
  });
});

describe("cachedFor", () => {
  it("shares one answer among callers for its time, and asks again after a failure", async () => {
    let calls = 0;
    let fail = true;
    const get = cachedFor(60_000, async () => {
      calls++;
      if (fail) throw new Error("no answer");
      return calls;
    });
    await expect(get()).rejects.toThrow("no answer");
    fail = false;
    const [a, b] = await Promise.all([get(), get()]);
    expect([a, b, calls]).toEqual([2, 2, 2]);
    expect(await get()).toBe(2);
  });
});

describe("answerWithin", () => {
  it("answers undefined for a failure and hands the failure to onError", async () => {
    const seen: unknown[] = [];
    const err = new Error("timeout");
    expect(await answerWithin(Promise.reject(err), 1000, (e) => seen.push(e))).toBeUndefined();
    expect(seen).toEqual([err]);
    expect(await answerWithin(Promise.resolve(7), 1000, (e) => seen.push(e))).toBe(7);
    expect(seen).toHaveLength(1);
  });
});

describe("UnlockSink", () => {
  const unlock = { unlock_id: "u1", tenant_id: "t", user_id: "u", achievement_id: "a", tier: null, rule_id: "r", rule_version: 1, occurrence: 1, unlocked_at: "2026-04-13T10:00:00Z", trigger_event_ids: ["e1"] };
  // A stream that stores the first publish on a subject and refuses the next ones (the create-only check), as JetStream does.
  const stream = () => {
    const stored = new Set<string>();
    return {
      publish: async (subject: string) => {
        if (stored.has(subject)) throw new JetStreamApiError({ code: 400, err_code: JsApiCodes.StreamWrongLastSequence, description: "wrong last sequence: 1" });
        stored.add(subject);
        return { stream: "s", seq: stored.size, duplicate: false };
      },
    };
  };

  it("counts one write per unlock stored, none for one the stream refuses as stored already, and none without stats", async () => {
    const stats = new Stats();
    const js = stream();
    const sink = new UnlockSink(js, stats);
    expect(await sink.deliver(unlock as never)).toBe(true);
    expect(await sink.recover(unlock as never)).toBe(false);
    expect(await sink.deliver(unlock as never)).toBe(false);
    expect(stats.unlockWrites).toBe(1);
    // A history sink (no stats), backfills included, counts nothing.
    const quiet = new UnlockSink(stream());
    expect(await quiet.deliverBackfilled(unlock as never)).toBe(true);
    expect(await quiet.deliverBackfilled(unlock as never)).toBe(false);
    expect(stats.unlockWrites).toBe(1);
  });
});

describe("achd_dlq_messages", () => {
  it("is left out of a scrape when the DLQ depth is not answered, not shown at its last value", async () => {
    let depth: number | undefined = 3;
    const m = new EngineMetrics(new Stats(), { owned: () => [], held: () => 0, cache: () => ({ hits: 0, misses: 0 }), consumers: async () => new Map(), dlqDepth: async () => depth }, { process: "p" });
    expect((await m.text()).body).toMatch(/^achd_dlq_messages\{process="p"\} 3$/m);
    depth = undefined;
    expect((await m.text()).body).not.toMatch(/^achd_dlq_messages\{/m);
  });
});

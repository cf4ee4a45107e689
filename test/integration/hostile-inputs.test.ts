import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import type { Engine } from "../../src/engine.ts";
import { eventMsgId, eventSubject } from "../../src/events/mod.ts";
import { Streams } from "../../src/nats/mod.ts";
import { reconcile, replayStream } from "../../src/replay/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { simulate } from "../../src/sim/mod.ts";
import { eventually, startTestEngine } from "../helpers/engine.ts";
import { drained, startTestNats, type TestNats } from "../helpers/nats.ts";
import { publishRaw, storedUnlocks } from "../helpers/stream.ts";

const RULES = [
  { id: "spender", type: "threshold", event: "purchase.placed", field: "payload.amount", aggregate: "sum", tiers: [{ name: "bronze", target: 100 }, { name: "silver", target: 1000 }] },
  { id: "onboarded", type: "sequence", steps: [{ event: "profile.completed" }, { event: "tutorial.finished" }, { event: "first_project.created" }] },
  { id: "constructor", type: "count", event: "lesson.completed", target: 2 },
  { id: "after", type: "composite", of: ["constructor"] },
];

/** Issue 12's hostile inputs, over NATS through the real workers, then replay and simulate on the same stream. */
describe("hostile event contents through the real pipeline", () => {
  let nats: TestNats;
  let engine: Engine;
  let rulesDir: string;
  const bodies: string[] = [];
  const base = Date.now() - 3_600_000;
  const at = (minutes: number) => new Date(base + minutes * 60_000).toISOString();
  let n = 0;
  const publish = async (user: string, type: string, occurredAt: string, payload = "{}") => {
    const id = `h-${n++}`;
    const text = `{"event_id":"${id}","event_type":"${type}","tenant_id":"hostile","user_id":"${user}","occurred_at":"${occurredAt}","payload":${payload}}`;
    bodies.push(text);
    await publishRaw(nats.js, eventSubject("hostile", user, type), text, eventMsgId("hostile", user, id));
  };

  beforeAll(async () => {
    rulesDir = mkdtempSync(join(tmpdir(), "achd-hostile-rules-"));
    writeFileSync(join(rulesDir, "rules.yaml"), stringify({ rules: RULES }));
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { rules: rulesDir, http: { enabled: false } });
    await publish("neg", "purchase.placed", at(1), '{"amount":-1e308}');
    await publish("neg", "purchase.placed", at(2), '{"amount":150}');
    await publish("huge", "purchase.placed", at(1), '{"amount":1e308}');
    await publish("huge", "purchase.placed", at(2), '{"amount":1e400}');
    await publish("future", "profile.completed", "9999-12-31T23:59:59Z");
    await publish("future", "profile.completed", at(1));
    await publish("future", "tutorial.finished", at(2));
    await publish("future", "first_project.created", at(3));
    await publish("proto", "lesson.completed", at(1));
    await publish("proto", "lesson.completed", at(2));
    await publish("proto", "lesson.completed", at(3), '{"__proto__":{"amount":5}}');
    await publish("deep", "lesson.completed", at(1), `${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}`);
    await eventually(() => drained(nats.jsm, 4), 60_000, "all partitions drained");
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
    rmSync(rulesDir, { recursive: true, force: true });
  });

  it("unlocks what the issue says it should, and nothing more", async () => {
    const got = await eventually(async () => {
      const u = await storedUnlocks(nats.nc, nats.js);
      return u.length >= 4 ? u : undefined;
    }, 20_000, "four unlocks");
    expect(got.map((u) => `${u.user_id}/${u.achievement_id}${u.tier ? `:${u.tier}` : ""}`).sort()).toEqual(["future/onboarded", "neg/spender:bronze", "proto/after", "proto/constructor"]);
  });

  it("dead-letters the far-future, the __proto__ and the 10,000-deep events with their own reasons", async () => {
    const c = await nats.js.consumers.get(Streams.Dlq, { filter_subjects: "ach.dlq.hostile.>" });
    const letters: { user: string; reason: string; error: string }[] = [];
    for await (const m of await c.fetch({ max_messages: 3, expires: 5000 })) {
      letters.push({ user: m.subject.split(".")[3]!, reason: m.headers!.get("Ach-Reason"), error: m.headers!.get("Ach-Error") });
      if (letters.length === 3) break;
    }
    expect(letters.map((l) => `${l.user} ${l.reason}`).sort()).toEqual(["deep too_complex", "future future_event", "proto invalid_event"]);
    expect(letters.find((l) => l.user === "future")!.error).toMatch(/^occurred_at: 9999-12-31T23:59:59\.000Z is more than limits\.futureSkew \(1d\) after the event was stored/);
  });

  it("replay and simulate give the workers' unlocks", async () => {
    const replay = await replayStream(nats.js, nats.jsm, { book: loadRules(rulesDir), maxBytes: 65_536, partitions: 4, threads: 1 });
    const diff = await reconcile(nats.js, nats.jsm, replay.unlocks);
    expect([diff.notRecorded, diff.recordedOnly, replay.rejected]).toEqual([[], [], 3]);
    const sim = simulate(
      bodies.map((b) => JSON.parse(b) as unknown),
      loadRules(rulesDir),
    );
    expect(sim.rejected.map((r) => r.rejection.code).sort()).toEqual(["future_event", "invalid_event", "too_complex"]);
    expect(sim.unlocks.map((u) => u.unlock_id).sort()).toEqual(replay.unlocks.map((u) => u.unlock_id).sort());
  });
});

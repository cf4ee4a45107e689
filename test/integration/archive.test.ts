import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { Buckets } from "../../src/nats/mod.ts";
import { decodeState } from "../../src/core/mod.ts";
import { eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

describe("event-id dedup beyond JetStream's window", () => {
  let nats: TestNats;
  let engine: Engine;
  beforeAll(async () => {
    nats = await startTestNats(4);
    // Three ids per chunk, so the archive is used after a handful of events.
    engine = await startTestEngine(nats.url, { worker: { recentIds: 3 } as never });
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  it("counts a retry of an old event once, found in the seen-ids archive by its event time", async () => {
    const user = "archived";
    const lessons = [1, 2, 3, 4].map((i) => ev("globex", user, "lesson.completed", { duration_seconds: 10 }, { occurred_at: new Date(Date.UTC(2026, 3, 13, 10, i)).toISOString() }));
    await publishAll(nats.js, lessons);
    const kv = await new Kvm(nats.nc).open(Buckets.State);
    const state = await eventually(async () => {
      const e = await kv.get(`globex.${user}`);
      const s = e?.value.length ? decodeState(e.value) : undefined;
      // All four applied: three ids moved to a chunk, the fourth in the recent list (one applied alone looks like it too).
      return s && s.arch?.e?.length === 1 && s.ids.length === 1 ? s : undefined;
    });
    expect(state.arch?.e).toHaveLength(1);
    const seen = await new Kvm(nats.nc).open(Buckets.Seen);
    expect(JSON.parse(new TextDecoder().decode((await seen.get(`globex.${user}.e.0`))!.value)).ids).toEqual(lessons.slice(0, 3).map((l) => l.event_id));
    // The first lesson again, without a msg id (as after JetStream's duplicate window): it must not make the fifth lesson.
    const before = engine.stats.duplicates;
    await publishAll(nats.js, [lessons[0]!], { msgId: false });
    await eventually(() => (engine.stats.duplicates > before ? true : undefined));
    const after = decodeState((await kv.get(`globex.${user}`))!.value);
    expect((after.eval.rules["five-lessons"] as unknown as { n: number }).n).toBe(4);
    expect(Object.keys(after.eval.unlocked)).toEqual(["first-lesson"]);
  });
});

/**
 * The same out-of-order sequence steps give the same unlocks whatever the
 * publishing pace and however many workers share the partitions, as long
 * as the steps arrive within the reorder window of each other.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import type { EventInput } from "../../src/events/mod.ts";
import { eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll, storedUnlocks } from "../helpers/stream.ts";

const RULES = `tenant: "*"
rules:
  - id: three-steps
    version: 1
    type: sequence
    steps:
      - event: step.a
      - event: step.b
      - event: step.c
`;

const T0 = Date.parse("2026-04-13T10:00:00Z");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Steps c, b, a (an hour apart in event time) published in that order, `gapMs` apart. */
async function reversedSteps(nats: TestNats, user: string, gapMs: number): Promise<void> {
  const steps: EventInput[] = (["c", "b", "a"] as const).map((s, i) => ev("pace", user, `step.${s}`, {}, { occurred_at: new Date(T0 + (2 - i) * 3_600_000).toISOString() }));
  for (const [i, s] of steps.entries()) {
    if (i > 0 && gapMs > 0) await sleep(gapMs);
    await publishAll(nats.js, [s]);
  }
}

/** Other users' traffic: a few hundred events a second while the steps arrive. */
function background(nats: TestNats, ms: number): Promise<void> {
  return (async () => {
    const end = Date.now() + ms;
    for (let i = 0; Date.now() < end; i++) {
      await publishAll(nats.js, [0, 1, 2].map((k) => ev("pace", `bg-${(i * 3 + k) % 97}`, "lesson.completed")));
      await sleep(10);
    }
  })();
}

describe("sequences do not depend on the publishing pace or the number of workers", () => {
  let nats: TestNats;
  let rules: string;
  const engines: Engine[] = [];
  beforeAll(async () => {
    nats = await startTestNats(4);
    rules = mkdtempSync(join(tmpdir(), "achd-pace-"));
    writeFileSync(join(rules, "rules.yaml"), RULES);
  });
  afterAll(async () => {
    for (const e of engines) await e.stop();
    await nats?.cleanup();
    rmSync(rules, { recursive: true, force: true });
  });

  it("unlocks three steps that arrive in reverse, at once or 250/700 ms apart, with one worker and with two", async () => {
    const start = async (id: string) => {
      const e = await startTestEngine(nats.url, { rules, worker: { id }, leases: { ttl: "2s" }, http: { enabled: false } });
      engines.push(e);
      return e;
    };
    const users: string[] = [];
    const run = async (label: string, gaps: number[]) => {
      const bg = background(nats, 2500);
      await Promise.all(
        gaps.map(async (gap, i) => {
          const user = `${label}-${gap}-${i}`;
          users.push(user);
          await reversedSteps(nats, user, gap);
        }),
      );
      await bg;
    };
    const one = await start("pace-a");
    await run("one", [0, 250, 700]);
    // A second worker process joins; wait until both hold partitions.
    const two = await start("pace-b");
    await eventually(() => (one.workers.length > 0 && two.workers.length > 0 && one.workers.length + two.workers.length === 4 ? true : undefined), 30_000, "two workers sharing the partitions");
    await run("two", [0, 250, 700]);
    const got = await eventually(async () => {
      const stored = (await storedUnlocks(nats.nc, nats.js)).filter((u) => u.achievement_id === "three-steps");
      return stored.length >= users.length ? stored : undefined;
    }, 30_000, "every user's sequence unlocked");
    expect(got.map((u) => u.user_id).sort()).toEqual([...users].sort());
    // Unlocked at the event time of the last step (step c), for every pace.
    expect(new Set(got.map((u) => u.unlocked_at))).toEqual(new Set([new Date(T0 + 2 * 3_600_000).toISOString()]));
    expect(one.stats.late + two.stats.late).toBe(0);
  });
});

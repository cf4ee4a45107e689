/**
 * A running engine holds a constant set of consumers: its periodic work
 * (heartbeats, lease renewals, partition plans, status) creates none, so
 * nothing churns on the server however long it runs.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

const SECONDS = Number(process.env.ACH_CONSUMERS_SECONDS ?? 60);

describe("consumers held by a running engine", () => {
  let nats: TestNats;
  let engine: Engine;
  beforeAll(async () => {
    nats = await startTestNats(4);
    // A short lease TTL: renewals, heartbeats and planning rounds several times a second.
    engine = await startTestEngine(nats.url, { leases: { ttl: "2s" } });
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  /** Every consumer on the server, as `stream/name`. */
  async function consumers(): Promise<Set<string>> {
    const out = new Set<string>();
    for await (const s of nats.jsm.streams.names()) {
      for await (const c of nats.jsm.consumers.list(s)) if (c) out.add(`${s}/${c.name}`);
    }
    return out;
  }

  it(`creates no consumer and keeps the same ones for ${SECONDS} s of work`, async () => {
    await eventually(() => (engine.workers.length === 4 ? true : undefined), 20_000, "partitions held");
    const first = await consumers();
    const seen = new Set(first);
    const counts: number[] = [];
    const end = Date.now() + SECONDS * 1000;
    for (let i = 0; Date.now() < end; i++) {
      await publishAll(nats.js, [ev("steady", `u${i % 7}`, "lesson.completed")]);
      // The status route lists leases and workers, as an operator's dashboard would every few seconds.
      expect((await apiFetch(engine, "/v1/status")).status).toBe(200);
      await new Promise((r) => setTimeout(r, 2000));
      const now = await consumers();
      counts.push(now.size);
      for (const c of now) seen.add(c);
    }
    console.log(`consumers: ${first.size} at start, counts ${counts.join(" ")}, ${seen.size - first.size} created meanwhile`);
    expect(counts.every((n) => n === first.size)).toBe(true);
    expect([...seen].filter((c) => !first.has(c))).toEqual([]);
  }, (SECONDS + 60) * 1000);
});

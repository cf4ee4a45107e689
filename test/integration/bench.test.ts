/**
 * The benchmark's smoke variant (`achd bench --smoke`): every section runs
 * on a tiny workload so the harness cannot rot. Timings are not checked;
 * what the sections count is, and they must agree with each other.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runBench, SMOKE_OPTIONS, type BenchResults } from "../../bench/mod.ts";

describe("achd bench --smoke", () => {
  const out = mkdtempSync(join(tmpdir(), "achd-bench-test-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("runs every section and writes results that agree with each other", { timeout: 240_000 }, async () => {
    const lines: string[] = [];
    const res = await runBench({ ...SMOKE_OPTIONS, out }, (l) => lines.push(l));
    const events = SMOKE_OPTIONS.workload.events;
    expect(res.errors).toBeUndefined();

    const written = JSON.parse(readFileSync(join(res.dir!, "results.json"), "utf8")) as BenchResults;
    expect(written.engine?.count).toBe(events);
    const md = readFileSync(join(res.dir!, "summary.md"), "utf8");
    for (const heading of ["ceiling: bare consumer, one ack per message", "engine (", "replay, in memory", "Offered load", "Metrics cost", "SSE fan-out", "Webhooks:", "Memory:", "Pure evaluator"]) expect(md).toContain(heading);
    expect(lines.join("\n")).toContain(`workload: ${events} events`);

    // Both bare consumers saw every event; so did the engine.
    expect(res.ceiling?.map((c) => [c.mode, c.count])).toEqual([
      ["ack-each", events],
      ["ack-batched", events],
    ]);
    expect(res.engine!.applied + res.engine!.unchanged + res.engine!.duplicates).toBeGreaterThanOrEqual(events);
    // The workers, the in-memory replay and the bare evaluator agree on what the stream unlocks.
    expect(res.engine!.unlocks).toBeGreaterThan(0);
    expect(res.replay?.count).toBe(events);
    expect(res.replay?.sameUnlocksAsEngine).toBe(true);
    expect(res.replay?.threads).toBe(2);
    expect(res.replay?.unlocks).toBe(res.engine!.unlocks);
    const all = res.evaluator!.find((e) => e.set.startsWith("all "));
    expect(all?.unlocks).toBe(res.replay?.unlocks);
    expect(res.evaluator!.map((e) => e.set.split(" ")[0])).toEqual(["count", "threshold", "streak", "sequence", "composite", "all"]);

    // The rare-unlock rule set and the count stream ran through the engine, each event once; one and two worker processes unlocked the same.
    expect(res.realistic?.engine.count).toBe(events);
    expect(res.realistic!.engine.unlocks).toBeGreaterThan(0);
    expect(res.realistic!.engine.unlocks).toBeLessThan(res.engine!.unlocks);
    expect(res.counts?.runs).toHaveLength(1);
    expect(res.counts!.runs[0]!.engine.count).toBe(SMOKE_OPTIONS.counts.events);
        expect(res.scaling?.runs.map((r) => r.processes)).toEqual([1, 2]);
    expect(res.scaling!.runs[1]!.unlocks).toBe(res.scaling!.runs[0]!.unlocks);
    expect(res.scaling!.runs[0]!.unlocks).toBe(res.counts!.runs[0]!.engine.unlocks);

    // Every probe came back: the direct ones quickly, the sequence ones after the reorder window.
    for (const l of res.latency!) {
      expect(l.direct.n).toBeGreaterThan(0);
      expect(l.direct.p50).toBeLessThanOrEqual(l.direct.max);
    }
    expect(res.latency!.reduce((n, l) => n + l.sequence.n, 0)).toBeGreaterThan(0);

    // Metrics off and on, twice each, every run through the whole stream.
    expect(res.metrics?.runs.map((r) => r.enabled)).toEqual([false, true, false, true]);
    expect(res.metrics!.runs.every((r) => r.perSecond > 0)).toBe(true);

    // Every open stream received every unlock.
    expect(res.sse?.deliveries).toBe(SMOKE_OPTIONS.sse.clients * SMOKE_OPTIONS.sse.unlocks);
    expect(res.sse!.latency.n).toBe(res.sse!.deliveries);

    // Every unlock reached the webhook once, every signature verified.
    expect(res.webhooks?.failedPublishes).toBe(0);
    expect(res.webhooks?.deliveries).toBe(SMOKE_OPTIONS.webhooks.unlocks);
    expect(res.webhooks!.latency.n).toBe(res.webhooks!.deliveries);
    expect(res.webhooks!.duplicates).toBe(0);
    expect(res.webhooks!.signatureFailures).toBe(0);

    // The memory section's worker went through every user.
    expect(res.memory!.samples.at(-1)?.processed).toBe(SMOKE_OPTIONS.memoryUsers);
    expect(res.memory!.peakMb).toBeGreaterThan(0);
  });
});

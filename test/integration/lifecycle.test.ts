/**
 * The engine's lifecycle against a real nats-server: its states from start
 * to stop, a stop that does not wait out a retry's back-off, and no timer of
 * the engine left once stop resolves.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { startEngine, type Engine } from "../../src/engine.ts";
import type { EngineState } from "../../src/util/lifecycle.ts";
import { createLogger } from "../../src/util/log.ts";
import { apiFetch, eventually, testConfig } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("engine lifecycle", () => {
  let nats: TestNats;
  let engine: Engine | undefined;

  beforeEach(async () => {
    nats = await startTestNats(1);
  });

  afterEach(async () => {
    await engine?.stop().catch(() => undefined);
    engine = undefined;
    await nats.cleanup();
  });

  it("goes starting → running → stopping → stopped, shows its state in /v1/status, and leaves no timer behind", async () => {
    const states: EngineState[] = [];
    // Let the test client's own timers settle before counting.
    await new Promise((r) => setTimeout(r, 200));
    const before = timeouts();
    const config = testConfig(nats.url, { partitions: 1 });
    engine = await startEngine(config, createLogger(config.log.level), { onState: (s) => void states.push(s) });
    expect(engine.state).toBe("running");
    expect(states).toEqual(["starting", "running"]);
    const status = (await (await apiFetch(engine, "/v1/status")).json()) as { engine?: string };
    expect(status.engine).toBe("running");
    await engine.stop();
    expect(states).toEqual(["starting", "running", "stopping", "stopped"]);
    expect(engine.state).toBe("stopped");
    // Every timer of the engine (coordinator loops, renewals, idle waits, request expiry) is cleared by now.
    await eventually(() => (timeouts() <= before ? true : undefined), 5_000, `no timers of the engine left (before: ${before}, now: ${timeouts()}: ${process.getActiveResourcesInfo().join(", ")})`);
  });

  it("stops promptly while a partition waits out a long retry back-off", async () => {
    // The state bucket takes no new key: a user's first commit fails with a passing store refusal and is retried.
    const config = testConfig(nats.url, { partitions: 1, worker: { maxBackoff: "60s", ackWait: "120s" }, shutdownGrace: "10s" });
    engine = await startEngine(config, createLogger(config.log.level));
    const state = await new Kvm(nats.nc).open("ach_state");
    await state.put("filler.filler", new TextEncoder().encode("{}"));
    const info = await nats.jsm.streams.info("KV_ach_state");
    await nats.jsm.streams.update("KV_ach_state", { ...info.config, max_msgs: info.state.messages });
    await publishAll(nats.js, [ev("acme", "u1", "lesson.completed")]);
    // Retried nine times: the pause now under way is 12.8 s (25 ms doubling, up to the configured 60 s).
    const stats = engine.stats;
    await eventually(() => (stats.retries >= 9 ? true : undefined), 60_000, "nine retries of the refused commit");
    expect(stats.applied).toBe(0);
    const started = Date.now();
    await engine.stop();
    const took = Date.now() - started;
    // Generous: well under the pause in hand (12.8 s), let alone the configured maximum back-off.
    expect(took).toBeLessThan(6_000);
    expect(engine.state).toBe("stopped");
  }, 120_000);
});

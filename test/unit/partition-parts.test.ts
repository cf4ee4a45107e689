/**
 * The partition worker's parts through their small interfaces, with test
 * doubles: the AckAll floor below held events, and a batch step's dead
 * letters when a later stage throws. (JetStream behaviour is covered against
 * a real server in test/integration/partition-worker.test.ts.)
 */
import type { JsMsg } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/mod.ts";
import { partitionOf } from "../../src/events/mod.ts";
import { StoppedError, type DeadLetters } from "../../src/pipeline/mod.ts";
import { Stats } from "../../src/metrics/mod.ts";
import { ReorderBuffer } from "../../src/pipeline/reorder.ts";
import { AckTracker } from "../../src/pipeline/worker/acks.ts";
import { BatchStep } from "../../src/pipeline/worker/step.ts";
import { createLogger } from "../../src/util/log.ts";
import { ev } from "../helpers/stream.ts";

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(() => void process.on("unhandledRejection", onUnhandled));
afterAll(() => void process.off("unhandledRejection", onUnhandled));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const enc = new TextEncoder();

/** A delivered message double: records its acks. */
function msg(seq: number, data = "{}", user = "u1"): JsMsg & { acked: number } {
  const m = {
    seq,
    subject: `ach.p.${partitionOf("acme", user, 4)}.acme.${user}.lesson.completed`,
    data: enc.encode(data),
    headers: undefined,
    info: { deliverySequence: seq, deliveryCount: 1, timestampNanos: Date.now() * 1e6 },
    acked: 0,
    ack() {
      m.acked++;
    },
    working() {},
  };
  return m as unknown as JsMsg & { acked: number };
}

describe("AckTracker", () => {
  it("acknowledges the highest processed message below the oldest held event, once", () => {
    const acks = new AckTracker({ mayAck: () => true });
    const ms = [1, 2, 3, 4, 5].map((s) => msg(s));
    acks.processed(ms.slice(0, 3));
    acks.ackFloor(3);
    expect(ms.map((m) => m.acked)).toEqual([0, 1, 0, 0, 0]);
    acks.processed(ms.slice(3));
    acks.ackFloor(undefined);
    expect(ms.map((m) => m.acked)).toEqual([0, 1, 0, 0, 1]);
    // Everything acknowledged has left the tracker.
    expect(acks.messagesOf(new Set([1, 2, 3, 4, 5]), [])).toEqual([]);
  });

  it("acknowledges nothing while the fence is closed, and keeps the messages for later", () => {
    let open = false;
    const acks = new AckTracker({ mayAck: () => open });
    const ms = [1, 2].map((s) => msg(s));
    acks.processed(ms);
    acks.ackFloor(undefined);
    expect(ms.map((m) => m.acked)).toEqual([0, 0]);
    open = true;
    acks.ackFloor(undefined);
    expect(ms.map((m) => m.acked)).toEqual([0, 1]);
  });

  it("finds messages by sequence among the unacknowledged and a batch, once each", () => {
    const acks = new AckTracker({ mayAck: () => true });
    const [a, b, c] = [1, 2, 3].map((s) => msg(s));
    acks.processed([a!, b!]);
    expect(acks.messagesOf(new Set([2, 3]), [b!, c!]).map((m) => m.seq)).toEqual([2, 3]);
  });
});

describe("BatchStep", () => {
  const config = loadConfig({}, { partitions: 4, nats: { url: "nats://127.0.0.1:1" }, worker: { maxAttempts: 3, maxBackoff: 50 } });

  it("waits for the dead letters it started before throwing what a later stage threw, and leaves no rejection unobserved", async () => {
    unhandled.length = 0;
    let running = true;
    let settled = false;
    let eagerCalls = 0;
    const dlq = {
      send: async () => {
        await sleep(50);
        settled = true;
        throw new Error("dead letter store unavailable");
      },
    } as unknown as DeadLetters;
    const step = new BatchStep({
      dlq,
      stats: new Stats(),
      config,
      log: createLogger("silent"),
      buffer: new ReorderBuffer(config.reorder),
      users: {
        // The eager stage stops at the fence at once, long before the dead letter's send fails.
        eager: async () => {
          eagerCalls++;
          running = false;
          throw new StoppedError("fence closed");
        },
        eagerInMemory: () => false,
        commit: async () => undefined,
        commitInMemory: () => false,
      },
      gate: { check: () => undefined },
      hooks: () => ({ isRunning: () => running, maxBackoff: 10, maxAttempts: 3, onConflict: () => undefined, onRetry: () => undefined }),
      messagesOf: () => [],
    });
    const valid = JSON.stringify(ev("acme", "u2", "lesson.completed"));
    await expect(step.process([msg(1, "not json"), msg(2, valid, "u2")])).rejects.toBeInstanceOf(StoppedError);
    expect(settled).toBe(true);
    expect(eagerCalls).toBe(1);
    await sleep(50);
    expect(unhandled).toEqual([]);
  });
});

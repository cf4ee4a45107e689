/**
 * The partition worker's lifecycle against a real nats-server: start, stop,
 * self-stop at the lease fence, rewind to the ack floor. Any unhandled
 * rejection fails the test it happened in.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { compileConfig, type Config } from "../../src/config/mod.ts";
import { ensureTopology, partitionConsumer, partitionConsumerConfig } from "../../src/nats/mod.ts";
import { DeadLetters, PartitionWorker, UnlockSink, unlockPublisher, type WorkerDeps } from "../../src/pipeline/mod.ts";
import { Stats } from "../../src/metrics/mod.ts";
import { userKey } from "../../src/core/mod.ts";
import { eventSubject } from "../../src/events/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { SeenArchive, StateStore } from "../../src/state/mod.ts";
import { createLogger } from "../../src/util/log.ts";
import { eventually, fixture, testConfig } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll, publishRaw } from "../helpers/stream.ts";

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(() => void process.on("unhandledRejection", onUnhandled));
afterAll(() => void process.off("unhandledRejection", onUnhandled));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("PartitionWorker lifecycle", () => {
  let nats: TestNats;
  let config: Config;
  let deps: WorkerDeps;
  const workers: PartitionWorker[] = [];

  beforeEach(async () => {
    unhandled.length = 0;
    nats = await startTestNats(1);
    config = testConfig(nats.url, { partitions: 1 });
    const buckets = await ensureTopology(nats.nc, nats.jsm, config);
    const book = loadRules(fixture("rules"));
    deps = {
      js: nats.js,
      jsm: nats.jsm,
      store: new StateStore(buckets.state, 0),
      seen: new SeenArchive(buckets.seen),
      rules: () => book,
      unlocks: new UnlockSink(unlockPublisher(nats.js)),
      dlq: new DeadLetters(nats.js),
      stats: new Stats(),
      log: createLogger(config.log.level),
      config,
    };
  });

  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop();
    await nats.cleanup();
    // Let a late rejection (a send still in flight) surface before checking.
    await sleep(config.worker.maxBackoff + 100);
    expect(unhandled.map(String)).toEqual([]);
  });

  const worker = (overrides: Partial<WorkerDeps> = {}) => {
    const w = new PartitionWorker({ ...deps, ...overrides }, 0);
    workers.push(w);
    return w;
  };
  const info = async () => (await partitionConsumer(nats.jsm, 0))!;
  const lastSeq = async () => (await nats.jsm.streams.info("ACH_EVENTS")).state.last_seq;
  const ackedUpTo = async (seq: number) => ((await info()).ack_floor.stream_seq >= seq ? true : undefined);
  const revisionOf = async (user: string) => (await deps.store.load(userKey("acme", user))).revision;
  /** Events the worker applied or found to change nothing: each counts once. */
  const seen = (s: Stats) => s.applied + s.unchanged + s.duplicates;

  it("starts, applies and acknowledges what is published, and stops", async () => {
    const w = worker();
    await w.start();
    expect(w.running).toBe(true);
    await publishAll(nats.js, [1, 2, 3].map(() => ev("acme", "u1", "lesson.completed", { duration_seconds: 30 })));
    await eventually(async () => ackedUpTo(await lastSeq()), 20_000, "the events acknowledged");
    expect(seen(deps.stats)).toBe(3);
    expect(await revisionOf("u1")).toBeGreaterThan(0);
    await w.stop();
    expect(w.running).toBe(false);
    // Stopped: nothing more is pulled.
    await publishAll(nats.js, [ev("acme", "u1", "lesson.completed")]);
    await eventually(async () => ((await info()).num_pending === 1 ? true : undefined), 10_000, "the new event left pending");
    expect(deps.stats.received).toBe(3);
  });

  it("stops itself at a closed fence without writing, and stop() then closes its consumer", async () => {
    let open = true;
    const w = worker({ fence: () => open });
    await w.start();
    await publishAll(nats.js, [ev("acme", "u1", "lesson.completed")]);
    const first = await lastSeq();
    await eventually(() => ackedUpTo(first), 20_000, "the first event acknowledged");
    const wrote = w.lastWriteAt;

    open = false;
    await publishAll(nats.js, [ev("acme", "u2", "lesson.completed")]);
    await eventually(() => (w.running ? undefined : true), 20_000, "the worker stopping itself");
    expect(await revisionOf("u2")).toBe(0);
    expect(w.lastWriteAt).toBe(wrote);
    expect((await info()).ack_floor.stream_seq).toBe(first);

    // The fix: stop() closes the consumer of a worker that stopped itself (it used to return at once).
    await w.stop();
    const delivered = (await info()).delivered.stream_seq;
    await publishAll(nats.js, [1, 2, 3].map(() => ev("acme", "u3", "lesson.completed")));
    await eventually(async () => ((await info()).num_pending === 3 ? true : undefined), 10_000, "the new events left pending");
    expect((await info()).delivered.stream_seq).toBe(delivered);
  });

  it("starts by rewinding to the ack floor what another reader took and did not acknowledge", async () => {
    const events = [1, 2, 3, 4].map(() => ev("acme", "u1", "lesson.completed"));
    await publishAll(nats.js, events);
    const before = await info();
    const taken = await (await nats.js.consumers.get("ACH_EVENTS", before.name)).fetch({ max_messages: 2, expires: 2000 });
    let n = 0;
    for await (const _ of taken) if (++n === 2) break;
    expect((await info()).num_ack_pending).toBe(2);

    const w = worker();
    await w.start();
    expect(deps.stats.rewinds).toBe(1);
    expect((await info()).name).not.toBe(before.name);
    await eventually(async () => ackedUpTo(await lastSeq()), 20_000, "all events acknowledged");
    expect(seen(deps.stats)).toBe(4);
    expect(deps.stats.duplicates).toBe(0);
  });

  it("rewinds a rewound consumer that acknowledged nothing to where it started, not to the stream's first message", async () => {
    // Five events applied and acknowledged by generation 0.
    await publishAll(nats.js, [1, 2, 3, 4, 5].map((i) => ev("acme", `early-${i}`, "lesson.completed")));
    const first = worker();
    await first.start();
    await eventually(async () => ackedUpTo(await lastSeq()), 20_000, "the first events acknowledged");
    await first.stop();
    // A rewind made generation 1 at sequence 6, and a reader took what followed without acknowledging it.
    const g0 = await info();
    const g1 = await nats.jsm.consumers.add("ACH_EVENTS", partitionConsumerConfig(config, 0, 6, 1));
    await nats.jsm.consumers.delete("ACH_EVENTS", g0.name);
    await publishAll(nats.js, [1, 2, 3].map((i) => ev("acme", `late-${i}`, "lesson.completed")));
    const taken = await (await nats.js.consumers.get("ACH_EVENTS", g1.name)).fetch({ max_messages: 3, expires: 2000 });
    let n = 0;
    for await (const _ of taken) if (++n === 3) break;
    // nats-server 2.9 reports an ack floor of 0 for it (2.10+ reports 5): the worker must rewind to 6 either way.
    expect((await info()).ack_floor.stream_seq).toBeLessThanOrEqual(5);
    const stats = new Stats();
    const w = worker({ stats });
    await w.start();
    expect(stats.rewinds).toBe(1);
    const g2 = await info();
    expect(g2.config.opt_start_seq).toBe(6);
    await eventually(async () => ackedUpTo(await lastSeq()), 20_000, "the late events acknowledged");
    expect(seen(stats), "only the three late events come again").toBe(3);
  });

  it("restarts a failed loop from the ack floor, applying each event once", async () => {
    const stats = new Stats();
    let failures = 1;
    // The first step fails outside any retry (as a bug would): the loop must restart and rewind.
    const counts = stats.tenant.bind(stats);
    stats.tenant = (t: string) => {
      if (failures-- > 0) throw new Error("boom");
      return counts(t);
    };
    const w = worker({ stats });
    await w.start();
    await publishAll(nats.js, [1, 2, 3].map(() => ev("acme", "u1", "lesson.completed")));
    await eventually(async () => ackedUpTo(await lastSeq()), 20_000, "all events acknowledged after the restart");
    expect(stats.rewinds).toBeGreaterThanOrEqual(1);
    expect(seen(stats)).toBe(3);
    expect(stats.duplicates).toBe(0);
    expect(w.running).toBe(true);
  });

  it("reopens a subscription that delivers nothing while its consumer holds messages (a pull lost in a split)", async () => {
    // The first subscription is dead: its iterator never yields and never fails, as a pull request lost with a
    // server would look to the client until its heartbeat check notices. The server's consumer is real.
    let dead = true;
    const js = new Proxy(nats.js, {
      get(target, prop, receiver) {
        if (prop !== "consumers") return Reflect.get(target, prop, receiver);
        return {
          get: async (...args: Parameters<typeof target.consumers.get>) => {
            const c = await target.consumers.get(...args);
            if (!dead) return c;
            dead = false;
            const never = { [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<never>>(() => {}) }), close: async () => undefined };
            return Object.assign(Object.create(c) as typeof c, { consume: async () => never });
          },
        };
      },
    });
    const stats = new Stats();
    const w = worker({ js, stats, timings: { ...compileConfig(config), stallCheck: 500 } });
    await w.start();
    await publishAll(nats.js, [1, 2, 3].map(() => ev("acme", "stuck", "lesson.completed")));
    await eventually(async () => ackedUpTo(await lastSeq()), 20_000, "the events applied through a new subscription");
    expect(seen(stats)).toBe(3);
  });

  it("awaits a step's dead-letter sends when a later stage stops it at the fence: no unhandled rejection", async () => {
    let open = true;
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    let calls = 0;
    let started!: () => void;
    const first = new Promise<void>((r) => (started = r));
    // Holds the first user's step until the next step's messages have arrived, so they make one batch.
    const io = async <T>(fn: () => Promise<T>): Promise<T> => {
      if (calls++ === 0) {
        started();
        await blocked;
      }
      return fn();
    };
    let rejected = false;
    const dlq = {
      // The send passes the fence, then the fence closes; the send fails later, after the step has thrown.
      send: async () => {
        open = false;
        await sleep(100);
        rejected = true;
        throw new Error("dead letter store unavailable");
      },
    } as unknown as DeadLetters;
    const w = worker({ fence: () => open, io: io as WorkerDeps["io"], dlq });
    await w.start();
    await publishAll(nats.js, [ev("acme", "u1", "lesson.completed")]);
    await first;
    await publishRaw(nats.js, eventSubject("acme", "u2", "lesson.completed"), "not json");
    await publishAll(nats.js, [ev("acme", "u3", "lesson.completed")]);
    await eventually(async () => ((await info()).delivered.stream_seq === 3 ? true : undefined), 10_000, "both messages delivered");
    release();
    await eventually(() => (w.running ? undefined : true), 20_000, "the worker stopping at the fence");
    await w.stop();
    await eventually(() => (rejected ? true : undefined), 5_000, "the dead-letter send failing");
    // The send's retry notices the stop after its back-off; its StoppedError must have been observed.
    await sleep(config.worker.maxBackoff + 100);
    expect(unhandled.map(String)).toEqual([]);
    expect(await revisionOf("u3")).toBe(0);
  });
});

/**
 * Start-up checks that tell the truth (issue 12, item 6): a slow server is
 * reported as slow — after a bounded wait — and never as a wrong one, and a
 * fleet of workers started together against a loaded server comes up.
 */
import { headers, nuid } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkPartitionMapping, ensureTopology, partitionBacklog, PROBE_HEADER, PROBE_TENANT, StartupTimeoutError, Streams, TopologyError, whenAnswered } from "../../src/nats/mod.ts";
import { preload } from "../../bench/stack.ts";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { eventually, testConfig } from "../helpers/engine.ts";
import { SERVER_2_10, SERVER_NAME, type TestNats, startTestNats } from "../helpers/nats.ts";
import { generate } from "../helpers/stream.ts";
import { startNatsServer } from "../../src/nats/mod.ts";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const P = 4;

describe("start-up checks tell a slow server from a wrong one", () => {
  let nats: TestNats;
  beforeAll(async () => {
    nats = await startTestNats(P);
    await ensureTopology(nats.nc, nats.jsm, testConfig(nats.url, { partitions: P }));
  });
  afterAll(async () => {
    nats?.server.process.kill("SIGCONT");
    await nats?.cleanup();
  });
  const config = () => testConfig(nats.url, { partitions: P });
  /**
   * Freezes the server (SIGSTOP) for `ms`: it answers nothing, then everything, like a server too busy to answer
   * for a while. Resolves once the server is stopped, with the promise of its thaw.
   */
  const freeze = async (ms: number) => {
    const pid = nats.server.process.pid!;
    nats.server.process.kill("SIGSTOP");
    await eventually(() => (/^\S+ \(.*\) T/.test(readFileSync(`/proc/${pid}/stat`, "utf8")) ? true : undefined), 2000, "the server stopped");
    const thawed = new Promise<void>((r) =>
      setTimeout(() => {
        nats.server.process.kill("SIGCONT");
        r();
      }, ms),
    );
    return { thawed };
  };

  it("counts only its own probes: engines starting together, amid other probes, all pass", async () => {
    // Engines on their own connections, and another engine's probes on the same subjects from yet another: the
    // old check counted foreign probes as its own and reported a missing mapping (most of these 18 checks).
    const conns = await Promise.all(Array.from({ length: 7 }, () => connect({ servers: nats.url })));
    const [noisy, ...engines] = conns as [NatsConnection, ...NatsConnection[]];
    const h = headers();
    h.set(PROBE_HEADER, "1");
    const noise = setInterval(() => {
      for (let i = 0; i < 200; i++) noisy.publish(`ach.events.${PROBE_TENANT}.${nuid.next()}.probe`, new Uint8Array(0), { headers: h });
    }, 1);
    try {
      await new Promise((r) => setTimeout(r, 100));
      for (let round = 0; round < 3; round++) await Promise.all(engines.map((nc) => checkPartitionMapping(nc, nats.jsm, config(), { timeoutMs: 20_000 })));
    } finally {
      clearInterval(noise);
      await Promise.all(conns.map((c) => c.close()));
    }
    await nats.jsm.streams.purge(Streams.Events, { filter: `ach.p.*.${PROBE_TENANT}.>` });
  });

  it("reports a server that does not answer as a timeout naming the wait, not as a missing mapping", async () => {
    const { thawed } = await freeze(3000);
    const err = await checkPartitionMapping(nats.nc, nats.jsm, config(), { timeoutMs: 1500 }).catch((e: unknown) => e);
    await thawed;
    expect(err).toBeInstanceOf(StartupTimeoutError);
    expect(err).not.toBeInstanceOf(TopologyError);
    expect((err as Error).message).toMatch(/^checking the partition mapping: no conclusive answer from NATS within 1\.\d s/);
    expect((err as Error).message).not.toMatch(/needs the partition mapping/);
  });

  it("waits out a slow server within its bound and then passes", async () => {
    const frozen = await freeze(2500);
    const t0 = Date.now();
    await checkPartitionMapping(nats.nc, nats.jsm, config(), { timeoutMs: 20_000 }).finally(() => frozen.thawed);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    // The JetStream steps of start-up too: retried while the server does not answer.
    const thawing = await freeze(6000);
    const info = await whenAnswered("reading the events stream", () => nats.jsm.streams.info(Streams.Events), { timeoutMs: 30_000 }).finally(() => thawing.thawed);
    expect(info.config.name).toBe(Streams.Events);
  });

  it("gives up on a JetStream step with a timeout after its bound, and says so", async () => {
    const { thawed } = await freeze(7000);
    const err = await whenAnswered("creating streams", () => nats.jsm.streams.info(Streams.Events), { timeoutMs: 1000 }).catch((e: unknown) => e);
    await thawed;
    expect(err).toBeInstanceOf(StartupTimeoutError);
    expect((err as Error).message).toMatch(/^creating streams: no conclusive answer from NATS within \d+\.\d s .*last: /);
  });

  it.runIf(!SERVER_2_10)(`still says at once that a server without the mapping needs it (${SERVER_NAME}; 2.10+ needs none)`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "achd-nomap-"));
    const bare = await startNatsServer({ host: "127.0.0.1", port: -1, dataDir: dir });
    const nc = await connect({ servers: bare.url });
    try {
      const jsm = await jetstreamManager(nc);
      const cfg = testConfig(bare.url, { partitions: P });
      await ensureTopology(nc, jsm, cfg);
      const t0 = Date.now();
      const err = await checkPartitionMapping(nc, jsm, cfg, { timeoutMs: 20_000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TopologyError);
      expect((err as Error).message).toMatch(/needs the partition mapping in its config \(events published on ach\.events\.> are not mapped to partitions\)/);
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      await nc.close();
      await bare.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a fleet of workers started together against a loaded server", () => {
  let nats: TestNats;
  const children: ChildEngine[] = [];
  const BACKLOG = 60_000;
  beforeAll(async () => {
    nats = await startTestNats(P);
    await ensureTopology(nats.nc, nats.jsm, testConfig(nats.url, { partitions: P }));
    await preload(nats.js, generate(12, BACKLOG, 3000));
    expect((await nats.jsm.streams.info(Streams.Events)).state.messages).toBe(BACKLOG);
  }, 60_000);
  afterAll(async () => {
    for (const c of children) await c.kill("SIGKILL");
    await nats?.cleanup();
  });

  it("brings every worker up", async () => {
    const before = await partitionBacklog(nats.jsm);
    expect(before).toBe(BACKLOG);
    for (let i = 0; i < 4; i++) children.push(startChild(nats.url, "worker", { ACH_WORKER_ID: `fleet-${i}`, ACH_PARTITIONS: String(P), LOG_LEVEL: "info" }));
    const results = await Promise.allSettled(children.map((c) => c.waitFor('"msg":"workers started"', 45_000)));
    const said = children.map((c) => c.output.join("\n"));
    for (const [i, r] of results.entries()) expect(r.status, `worker ${i}:\n${said[i]!.slice(-2000)}`).toBe("fulfilled");
    for (const s of said) expect(s).not.toMatch(/needs the partition mapping|StartupTimeoutError/);
    for (const c of children) expect(c.process.exitCode).toBeNull();
    // They work the backlog off together.
    await eventually(async () => ((await partitionBacklog(nats.jsm)) < before ? true : undefined), 20_000, "the backlog shrinking");
  });
});

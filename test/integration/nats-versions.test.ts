import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionMapping, partitionOf } from "../../src/events/mod.ts";
import { atLeast, binaryVersion, natsBinaryIfPresent, serverConfigFile, startNatsServer, Streams, type EmbeddedServer } from "../../src/nats/mod.ts";
import { loadRules } from "../../src/rules/mod.ts";
import { loadConfig } from "../../src/config/mod.ts";
import { startEngine, type Engine } from "../../src/engine.ts";
import { createLogger } from "../../src/util/log.ts";
import { eventually, fixture, startTestEngine } from "../helpers/engine.ts";
import { drained } from "../helpers/nats.ts";
import { expectOracleUnlocks, generate, publishAll, publishRetrying } from "../helpers/stream.ts";

// Both binaries are on the CI machine (.ci/run provisions them); a machine with one of them runs what it can, and says so in the test names.
const floor = natsBinaryIfPresent("floor");
const reference = natsBinaryIfPresent("reference");
const name = (bin: string | undefined) => (bin ? `nats-server ${binaryVersion(bin).join(".")}` : "missing");
const canUpgrade = Boolean(floor && reference && !atLeast(binaryVersion(floor), 2, 10) && atLeast(binaryVersion(reference), 2, 10));
const P = 4;

/** Every stored event's partition token, by `tenant/user`; fails when one user's events sit in two partitions. */
async function storedPartitions(jsm: JetStreamManager): Promise<Map<string, number>> {
  const info = await jsm.streams.info(Streams.Events);
  const out = new Map<string, number>();
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    // Sequences of purged start-up probes are gaps.
    const m = await jsm.streams.getMessage(Streams.Events, { seq });
    if (!m) continue;
    const t = m.subject.split(".");
    const key = `${t[3]}/${t[4]}`;
    const k = Number(t[2]);
    expect(out.get(key) ?? k, `${key}: events in two partitions`).toBe(k);
    out.set(key, k);
  }
  return out;
}

describe.runIf(canUpgrade)(`a store upgraded in place: ${name(floor)} → ${name(reference)}`, () => {
  let dir: string;
  let server: EmbeddedServer | undefined;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let port = -1;
  const events = generate(31, 3000, 40);
  const book = loadRules(fixture("rules"));

  /** Starts `binary` on the same store and port; `mapping` puts the 2.9-style partition mapping in its config. */
  async function serve(binary: string, mapping: boolean): Promise<void> {
    await server?.stop();
    const m = partitionMapping(P);
    server = await startNatsServer({
      host: "127.0.0.1",
      port,
      dataDir: join(dir, "nats"),
      binary,
      partitions: P,
      ...(mapping && atLeast(binaryVersion(binary), 2, 10) ? { extraConfig: `mappings {\n  "${m.src}": "${m.dest}"\n}\n` } : {}),
    });
    port = server.port;
  }

  /** One engine over the server: publishes `batch`, waits until every partition is drained, stops. */
  async function run(batch: typeof events): Promise<void> {
    const engine: Engine = await startTestEngine(server!.url, { partitions: P });
    try {
      // Retried: right after a server restart the client may still be reconnecting, and a loaded machine answers late.
      await publishRetrying(js, batch);
      await eventually(() => drained(jsm, P), 60_000, "all partitions drained");
    } finally {
      await engine.stop();
    }
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "achd-upgrade-"));
    await serve(floor!, true);
    nc = await connect({ servers: server!.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
  });
  afterAll(async () => {
    await nc?.close().catch(() => undefined);
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("keeps every event, every unlock and every partition assignment through the upgrade", async () => {
    // 2.9: the server maps events (its config), the stream takes ach.p.*.>.
    await run(events.slice(0, 1000));
    const before = await storedPartitions(jsm);
    expect((await jsm.streams.info(Streams.Events)).config.subjects).toEqual(["ach.p.*.>"]);

    // The new binary on the same store, its config still mapping events (an operator's server upgraded as it was).
    await serve(reference!, true);
    await run(events.slice(1000, 2000));
    const kept = await jsm.streams.info(Streams.Events);
    expect(kept.config.subjects, "a server that maps events keeps the stream as it was").toEqual(["ach.p.*.>"]);
    expect(kept.config.subject_transform).toBeUndefined();

    // The mapping removed from the config: the stream takes it over, with the stored events as they were.
    await serve(reference!, false);
    expect(readFileSync(serverConfigFile(join(dir, "nats")), "utf8")).not.toContain("mappings");
    await run(events.slice(2000));
    const moved = await jsm.streams.info(Streams.Events);
    expect(moved.config.subjects).toEqual(["ach.events.>"]);
    expect(moved.config.subject_transform).toEqual(partitionMapping(P));
    expect(moved.state.messages, "every event stored once").toBe(events.length);

    const after = await storedPartitions(jsm);
    for (const [key, k] of before) expect(after.get(key), `${key} moved partition`).toBe(k);
    for (const [key, k] of after) {
      const [tenant, user] = key.split("/");
      expect(k, key).toBe(partitionOf(tenant!, user!, P));
    }
    await expectOracleUnlocks(nc, js, events, book);
  });
});

/** An in-process engine on its own embedded server (`binary`), without authorization, for the settings in `sync`. */
async function embeddedEngine(binary: string, sync: "default" | "always"): Promise<Engine> {
  const prev = process.env.ACH_NATS_SERVER;
  process.env.ACH_NATS_SERVER = binary;
  try {
    const config = loadConfig(
      { ACH_CONFIG: fixture("achd.test.yaml") },
      { dataDir: mkdtempSync(join(tmpdir(), "achd-sync-")), rules: fixture("rules"), log: { level: "silent" }, auth: { mode: "none" }, http: { port: 0 }, partitions: 2, nats: { embedded: { port: -1, sync } } },
    );
    return await startEngine(config, createLogger("silent"));
  } finally {
    if (prev === undefined) delete process.env.ACH_NATS_SERVER;
    else process.env.ACH_NATS_SERVER = prev;
  }
}

describe.runIf(reference && atLeast(binaryVersion(reference), 2, 10))(`durability on ${name(reference)}`, () => {
  it("fsyncs every write with nats.embedded.sync always, and the engine runs on it", async () => {
    const engine = await embeddedEngine(reference!, "always");
    try {
      expect(readFileSync(serverConfigFile(engine.config.dataDir), "utf8")).toMatch(/sync_interval: always/);
      const c = await connect({ servers: engine.natsUrl });
      try {
        const events = generate(7, 300, 10);
        await publishAll(jetstream(c), events);
        const m = await jetstreamManager(c);
        await eventually(() => drained(m, 2), 60_000, "all partitions drained");
        await expectOracleUnlocks(c, jetstream(c), events, loadRules(fixture("rules")));
      } finally {
        await c.close();
      }
    } finally {
      await engine.stop();
      rmSync(engine.config.dataDir, { recursive: true, force: true });
    }
  });
});

describe.runIf(floor && !atLeast(binaryVersion(floor), 2, 10))(`durability on ${name(floor)}`, () => {
  it("refuses sync always, which 2.9 cannot give, and says why", async () => {
    await expect(embeddedEngine(floor!, "always")).rejects.toThrow(/has no sync_interval \(it came in 2\.10\)/);
  });
});

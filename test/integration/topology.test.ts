import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionMapping, partitionOf } from "../../src/events/mod.ts";
import { checkPartitionMapping, consumerName, ensureTopology, partitionConsumer, Streams, TopologyError } from "../../src/nats/mod.ts";
import { startTestEngine, testConfig } from "../helpers/engine.ts";
import { SERVER_2_10, SERVER_NAME, startTestNats, type TestNats } from "../helpers/nats.ts";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startNatsServer } from "../../src/nats/mod.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

describe("streams, consumers, buckets and the partition mapping", () => {
  let nats: TestNats;
  beforeAll(async () => {
    nats = await startTestNats(8);
  });
  afterAll(async () => {
    await nats?.cleanup();
  });

  it(`maps events to the same partition as the engine computes (${SERVER_2_10 ? "the stream's subject transform" : "the server's {{partition}} mapping"})`, async () => {
    const config = testConfig(nats.url, { partitions: 8 });
    await ensureTopology(nats.nc, nats.jsm, config);
    const users = Array.from({ length: 200 }, (_, i) => [`t${i % 7}`, `user-${i}`] as const);
    const first = (await nats.jsm.streams.info(Streams.Events)).state.last_seq + 1;
    for (const [t, u] of users) await nats.js.publish(`ach.events.${t}.${u}.x.y`, "");
    const seen = new Map<string, number>();
    for (let seq = first; seq < first + users.length; seq++) {
      const t = (await nats.jsm.streams.getMessage(Streams.Events, { seq }))!.subject.split(".");
      seen.set(`${t[3]}/${t[4]}`, Number(t[2]));
    }
    for (const [t, u] of users) expect(seen.get(`${t}/${u}`), `${t}/${u}`).toBe(partitionOf(t, u, 8));
    expect(new Set(seen.values()).size).toBe(8);
    await nats.jsm.streams.purge(Streams.Events);
  });

  it("creates everything idempotently and refuses another partition count", async () => {
    const config = testConfig(nats.url, { partitions: 8 });
    await ensureTopology(nats.nc, nats.jsm, config);
    await ensureTopology(nats.nc, nats.jsm, config);
    for (let k = 0; k < 8; k++) expect((await nats.jsm.consumers.info(Streams.Events, consumerName(k))).config.filter_subject).toBe(`ach.p.${k}.>`);
    await expect(new Kvm(nats.nc).open("ach_state")).resolves.toBeDefined();
    await checkPartitionMapping(nats.nc, nats.jsm, config);
    await expect(ensureTopology(nats.nc, nats.jsm, testConfig(nats.url, { partitions: 4 }))).rejects.toThrow(/created with 8 partitions but partitions is 4/);
  });

  it.runIf(!SERVER_2_10)(`says what to add to a 2.9 server config that lacks the mapping (${SERVER_NAME}; 2.10+ needs none)`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "achd-nomap-"));
    const bare = await startNatsServer({ host: "127.0.0.1", port: -1, dataDir: dir });
    const nc = await connect({ servers: bare.url });
    try {
      const jsm = await jetstreamManager(nc);
      const config = testConfig(bare.url, { partitions: 8 });
      await ensureTopology(nc, jsm, config);
      const err = await checkPartitionMapping(nc, jsm, config).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TopologyError);
      expect(String((err as Error).message)).toContain('"ach.events.*.*.>": "ach.p.{{partition(8,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.>"');
      // The engine refuses to start against it.
      await expect(startTestEngine(bare.url, { partitions: 8 })).rejects.toThrow(/needs the partition mapping/);
    } finally {
      await nc.close();
      await bare.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.runIf(SERVER_2_10)(`needs no mapping in the server config on ${SERVER_NAME}, uses one kept from 2.9, and refuses one with another partition count`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "achd-map-"));
    const cases = [
      { name: "bare", extra: "", want: "stream" },
      { name: "kept", extra: `mappings {\n  "${partitionMapping(8).src}": "${partitionMapping(8).dest}"\n}\n`, want: "server" },
      { name: "wrong", extra: `mappings {\n  "${partitionMapping(5).src}": "${partitionMapping(5).dest}"\n}\n`, want: /maps events to another partition count/ },
    ];
    try {
      for (const c of cases) {
        const server = await startNatsServer({ host: "127.0.0.1", port: -1, dataDir: join(dir, c.name), extraConfig: c.extra });
        const nc = await connect({ servers: server.url });
        try {
          const jsm = await jetstreamManager(nc);
          const config = testConfig(server.url, { partitions: 8 });
          if (typeof c.want === "string") {
            expect(await checkPartitionMapping(nc, jsm, config), c.name).toBe(c.want);
            // The engine starts on it, and events published on ach.events reach their partitions.
            const engine = await startTestEngine(server.url, { partitions: 8 });
            await engine.stop();
            const events = (await jsm.streams.info(Streams.Events)).config;
            expect(Boolean(events.subject_transform), c.name).toBe(c.want === "stream");
          } else {
            await expect(checkPartitionMapping(nc, jsm, config), c.name).rejects.toThrow(c.want);
          }
        } finally {
          await nc.close();
          await server.stop();
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses to start with an invalid rule set, naming the rule and the path", async () => {
    const dir = mkdtempSync(join(tmpdir(), "achd-badrules-"));
    writeFileSync(join(dir, "bad.yaml"), "rules:\n  - id: broken\n    version: 1\n    type: count\n    event: lesson.completed\n    target: 0\n");
    try {
      await expect(startTestEngine(nats.url, { partitions: 8, rules: dir })).rejects.toThrow(/bad\.yaml rule broken at target: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reports ready only when streams and consumers exist", async () => {
    const engine = await startTestEngine(nats.url, { partitions: 8 });
    try {
      const ok = await fetch(`${engine.httpUrl}/readyz`);
      expect(ok.status).toBe(200);
      expect((await fetch(`${engine.httpUrl}/healthz`)).status).toBe(200);
      const doc = (await (await fetch(`${engine.httpUrl}/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> };
      expect(doc.openapi).toBe("3.1.0");
      expect(Object.keys(doc.paths)).toContain("/v1/events");
      // While a worker is stopped its consumer is still there; delete one to see readiness go.
      await engine.workers[3]!.stop();
      await nats.jsm.consumers.delete(Streams.Events, (await partitionConsumer(nats.jsm, 3))!.name);
      const notReady = await fetch(`${engine.httpUrl}/readyz`);
      expect(notReady.status).toBe(503);
      expect(JSON.stringify(await notReady.json())).toContain("consumer of partition 3");
      // A worker that finds its consumer gone creates it again.
      await engine.workers[3]!.start();
      expect((await fetch(`${engine.httpUrl}/readyz`)).status).toBe(200);
    } finally {
      await engine.stop();
    }
  });
});

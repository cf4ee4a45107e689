import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { partitionOf } from "../../src/events/mod.ts";
import { checkPartitionMapping, consumerName, ensureTopology, partitionConsumer, Streams, TopologyError } from "../../src/nats/mod.ts";
import { startTestEngine, testConfig } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
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

  it("computes the same partition as the server's {{partition}} mapping", async () => {
    const users = Array.from({ length: 200 }, (_, i) => [`t${i % 7}`, `user-${i}`] as const);
    const seen = new Map<string, number>();
    const sub = nats.nc.subscribe("ach.p.>");
    const done = (async () => {
      for await (const m of sub) {
        const t = m.subject.split(".");
        seen.set(`${t[3]}/${t[4]}`, Number(t[2]));
        if (seen.size === users.length) break;
      }
    })();
    for (const [t, u] of users) nats.nc.publish(`ach.events.${t}.${u}.x.y`, "");
    await done;
    for (const [t, u] of users) expect(seen.get(`${t}/${u}`), `${t}/${u}`).toBe(partitionOf(t, u, 8));
    expect(new Set(seen.values()).size).toBe(8);
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

  it("says what to add to a 2.9 server config that lacks the mapping", async () => {
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

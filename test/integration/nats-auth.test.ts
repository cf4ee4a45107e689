import { execFile } from "node:child_process";
import { UnlockRecords } from "../../src/pipeline/mod.ts";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { connect, errors, nkeyAuthenticator, PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { createUser } from "@nats-io/nkeys";
import { startEngine, type Engine } from "../../src/engine.ts";
import { eventMsgId, partitionOf } from "../../src/events/mod.ts";
import { DlqHeaders } from "../../src/pipeline/mod.ts";
import { Buckets, Streams } from "../../src/nats/mod.ts";
import { publishEvent } from "../../bench/stack.ts";
import { tenantInboxPrefix, TenantExistsError, TenantRegistry, type IssuedTenant } from "../../src/tenants/mod.ts";
import { eventually, testConfig } from "../helpers/engine.ts";
import { SERVER_2_10, SERVER_NAME } from "../helpers/nats.ts";
import { ev } from "../helpers/stream.ts";

const BIN = fileURLToPath(new URL("../../bin/achd.js", import.meta.url));
const enc = new TextEncoder();

/** A client of one tenant: its seed and its own inbox prefix, no reconnect (so a cut-off shows as closed). */
function tenantConnect(url: string, t: IssuedTenant): Promise<NatsConnection> {
  return connect({ servers: url, authenticator: nkeyAuthenticator(enc.encode(t.seed)), inboxPrefix: tenantInboxPrefix(t.tenant), reconnect: false });
}

/** Every file under `dir`, recursively. */
function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? files(join(dir, d.name)) : [join(dir, d.name)]));
}

describe("NATS credentials per role on the embedded server (auth.mode keys)", () => {
  const root = mkdtempSync(join(tmpdir(), "achd-auth-"));
  const dataDir = join(root, "data");
  const logs: string[] = [];
  let engine: Engine;
  let registry: TenantRegistry;
  let A: IssuedTenant;
  let B: IssuedTenant;
  let ncA: NatsConnection;
  const seeds: string[] = [];

  beforeAll(async () => {
    const config = testConfig("", { nats: { embedded: { port: -1 } }, dataDir, http: { enabled: false }, partitions: 4 });
    expect(config.nats.url).toBeUndefined();
    expect(config.auth.mode).toBe("keys");
    engine = await startEngine(config, pino({ level: "debug" }, { write: (s: string) => void logs.push(s) }));
    registry = new TenantRegistry(await new Kvm(engine.nc).open(Buckets.Tenants));
    A = await registry.add("A");
    B = await registry.add("B");
    seeds.push(A.seed, B.seed);
    // The engine reloads the server's authorization on the registry change.
    ncA = await eventually(() => tenantConnect(engine.natsUrl, A), 10_000, "tenant A admitted");
  });
  afterAll(async () => {
    await ncA?.close().catch(() => undefined);
    await engine?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("refuses a connection without credentials or with an unknown key", async () => {
    await expect(connect({ servers: engine.natsUrl, reconnect: false })).rejects.toBeInstanceOf(errors.AuthorizationError);
    const stranger = createUser();
    await expect(connect({ servers: engine.natsUrl, reconnect: false, authenticator: nkeyAuthenticator(stranger.getSeed()) })).rejects.toBeInstanceOf(errors.AuthorizationError);
  });

  it("stores only the public key and refuses a tenant that exists", async () => {
    expect(A.seed).toMatch(/^SU[A-Z2-7]{56}$/);
    expect(await registry.get("A")).toEqual({ tenant: "A", nkey: A.nkey, created_at: A.created_at });
    await expect(registry.add("A")).rejects.toBeInstanceOf(TenantExistsError);
    await expect(registry.add("not a tenant")).rejects.toThrow(/not valid/);
  });

  it("refuses every publish outside the tenant's own events, at the server", async () => {
    const violations: PermissionViolationError[] = [];
    void (async () => {
      for await (const s of ncA.status()) if (s.type === "error" && s.error instanceof PermissionViolationError) violations.push(s.error);
    })();
    const forbidden = [
      "ach.p.0.B.u1.lesson.completed",
      "ach.unlocked.A.u1",
      "ach.unlocked.B.u1",
      "ach.dlq.A.u1",
      `$KV.${Buckets.State}.A.u1`,
      "$JS.API.STREAM.NAMES",
      `$JS.API.STREAM.INFO.${Streams.Events}`,
      "_INBOX_B.x.y",
    ];
    for (const subject of forbidden) {
      // The request rejects with a RequestError caused by the server's permission violation.
      const err = await ncA.request(subject, enc.encode("{}"), { timeout: 3000 }).then(() => undefined, (e: unknown) => e);
      expect(err, subject).toBeInstanceOf(errors.RequestError);
      const cause = (err as Error).cause;
      expect(cause, subject).toBeInstanceOf(PermissionViolationError);
      expect(cause, subject).toMatchObject({ operation: "publish", subject });
    }
    const toB = await publishEvent(jetstream(ncA, { timeout: 2000 }), ev("B", "u1", "lesson.completed")).then(() => undefined, (e: unknown) => e);
    if (SERVER_2_10) {
      // From 2.10 on the server maps nothing: the violation names B's subject, and the request fails with it.
      expect((toB as Error).cause).toBeInstanceOf(PermissionViolationError);
      expect((toB as Error).cause).toMatchObject({ operation: "publish", subject: "ach.events.B.u1.lesson.completed" });
    } else {
      // nats-server 2.9 checks the subject after its partition mapping, so the error names the mapped subject;
      // nats.js cannot match it to the request, which times out, and reports it as an error status.
      expect(toB).toBeInstanceOf(errors.TimeoutError);
      await eventually(() => violations.find((v) => v.subject === `ach.p.${partitionOf("B", "u1", 4)}.B.u1.lesson.completed`), 5000, "the violation for B's subject");
    }
    // A plain publish is refused too; the client hears of it as an error status.
    ncA.publish("ach.unlocked.A.u1", enc.encode('{"forged":true}'));
    await eventually(() => violations.find((v) => v.subject === "ach.unlocked.A.u1"), 5000, "the violation for a forged unlock");
    // Nothing forged reached a stream or bucket.
    const jsm = await jetstream(engine.nc).jetstreamManager();
    for (const s of [Streams.Unlocks, Streams.Dlq]) expect((await jsm.streams.info(s)).state.messages, s).toBe(0);
    expect((await jsm.streams.info(Streams.Events)).state.messages).toBe(0);
    expect(await (await new Kvm(engine.nc).open(Buckets.State)).get("A.u1")).toBeNull();
  });

  it.runIf(!SERVER_2_10)(`lets A publish straight to its own partition subjects, and the engine dead-letters a wrong partition (${SERVER_NAME})`, async () => {
    const e = ev("A", "direct-user", "lesson.completed");
    const home = partitionOf("A", "direct-user", 4);
    const wrong = (home + 1) % 4;
    const ack = await jetstream(ncA).publish(`ach.p.${wrong}.A.direct-user.lesson.completed`, JSON.stringify(e), { msgID: eventMsgId("A", "direct-user", e.event_id) });
    expect(ack.stream).toBe(Streams.Events);
    const jsm = await jetstream(engine.nc).jetstreamManager();
    const dead = await eventually(async () => ((await jsm.streams.info(Streams.Dlq)).state.messages === 1 ? jsm.streams.getMessage(Streams.Dlq, { seq: 1 }) : undefined), 15_000, "the dead letter");
    expect(dead?.header?.get(DlqHeaders.Reason)).toBe("wrong_partition");
    expect(await new UnlockRecords(jetstream(engine.nc), jsm).get("A.direct-user.first-lesson._.1")).toBeNull();
  });

  it.runIf(SERVER_2_10)(`stores nothing A publishes straight to a partition subject: the stream takes only ach.events and maps it itself (${SERVER_NAME})`, async () => {
    const e = ev("A", "direct-user", "lesson.completed");
    const wrong = (partitionOf("A", "direct-user", 4) + 1) % 4;
    const err = await jetstream(ncA, { timeout: 2000 })
      .publish(`ach.p.${wrong}.A.direct-user.lesson.completed`, JSON.stringify(e), { msgID: eventMsgId("A", "direct-user", e.event_id) })
      .then(() => undefined, (x: unknown) => x);
    expect(String((err as Error | undefined)?.cause ?? err)).toMatch(/no responders/);
    const jsm = await jetstream(engine.nc).jetstreamManager();
    expect((await jsm.streams.info(Streams.Events, { subjects_filter: "ach.p.*.A.direct-user.>" })).state.subjects ?? {}).toEqual({});
  });

  it("refuses every subscription outside the tenant's unlocks and inbox", async () => {
    for (const subject of ["ach.unlocked.B.>", "ach.unlocked.>", `${tenantInboxPrefix("B")}.>`, "_INBOX.>", "ach.events.>", "ach.p.>", "ach.dlq.>", "$KV.>", ">"]) {
      const sub = ncA.subscribe(subject);
      const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r("open"), 3000))]);
      expect(closed, subject).toBeInstanceOf(errors.PermissionViolationError);
    }
  });

  it("accepts A's own events (PubAck on A's inbox), maps them to the partitioned stream and delivers A's unlocks", async () => {
    const sub = ncA.subscribe("ach.unlocked.A.>");
    const got = (async () => {
      for await (const m of sub) return m.json<{ achievement_id: string; user_id: string }>();
    })();
    // One lesson unlocks the shared rule first-lesson (test/fixtures/rules/count.yaml).
    const ack = await publishEvent(jetstream(ncA), ev("A", "first-user", "lesson.completed"));
    expect(ack.stream).toBe(Streams.Events);
    const stored = await (await jetstream(engine.nc).jetstreamManager()).streams.getMessage(Streams.Events, { seq: ack.seq });
    expect(stored?.subject).toBe(`ach.p.${partitionOf("A", "first-user", 4)}.A.first-user.lesson.completed`);
    expect(await got).toMatchObject({ achievement_id: "first-lesson", user_id: "first-user" });
  });

  it("adds and removes tenants while A's events flow, loses none of them, and cuts a removed tenant off", async () => {
    const ncB = await tenantConnect(engine.natsUrl, B);
    const bClosed = ncB.closed().then(() => "closed");
    const unlocked = new Set<string>();
    const sub = ncA.subscribe("ach.unlocked.A.>", { callback: (_e, m) => void unlocked.add(m.json<{ user_id: string }>().user_id) });
    const jsA = jetstream(ncA);
    const acked: string[] = [];
    const failed: string[] = [];
    let changing = true;
    // A publishes without pause (ten at a time, each user once) until every registry change has been applied.
    const flow = (async () => {
      for (let i = 0; changing || i < 100; i += 10) {
        const users = Array.from({ length: 10 }, (_, j) => `flow-${i + j}`);
        await Promise.all(users.map((u) => publishEvent(jsA, ev("A", u, "lesson.completed")).then(() => acked.push(u), () => failed.push(u))));
      }
    })();
    const C = await registry.add("C");
    seeds.push(C.seed);
    const ncC = await eventually(() => tenantConnect(engine.natsUrl, C), 10_000, "tenant C admitted");
    await registry.remove("B");
    // The reload that drops B's key closes B's live connection.
    expect(await Promise.race([bClosed, new Promise((r) => setTimeout(() => r("still open"), 5000))])).toBe("closed");
    await expect(tenantConnect(engine.natsUrl, B)).rejects.toBeInstanceOf(errors.AuthorizationError);
    const D = await registry.add("D");
    seeds.push(D.seed);
    const ncD = await eventually(() => tenantConnect(engine.natsUrl, D), 10_000, "tenant D admitted");
    changing = false;
    await flow;
    // C stayed connected through the later reloads.
    expect(ncC.isClosed()).toBe(false);
    await Promise.all([ncC.close(), ncD.close()]);
    expect(failed).toEqual([]);
    expect(acked.length).toBeGreaterThanOrEqual(100);
    // Every acknowledged event was applied: its user got first-lesson, recorded and delivered to A.
    const records = new UnlockRecords(jetstream(engine.nc), await jetstream(engine.nc).jetstreamManager());
    await eventually(async () => {
      for (const u of acked) if (!(await records.get(`A.${u}.first-lesson._.1`))) return undefined;
      return true;
    }, 30_000, "an unlock for every acknowledged event");
    await eventually(() => (acked.every((u) => unlocked.has(u)) ? true : undefined), 10_000, "A's subscription saw every unlock");
    sub.unsubscribe();
  });

  it("the CLI issues a seed file with mode 0600, lists tenants and prints the authorization block", async () => {
    const port = new URL(engine.natsUrl).port;
    const env = { ...process.env, ACH_CONFIG: "", NATS_URL: "", NATS_CREDS: "", ACH_DATA_DIR: dataDir, ACH_NATS_PORT: port, ACH_PARTITIONS: "4", LOG_LEVEL: "silent" };
    const achd = (...args: string[]) => promisify(execFile)(process.execPath, [BIN, ...args], { env });
    mkdirSync(join(root, "secrets"));
    const out = join(root, "secrets", "E.nk");
    const added = await achd("tenants", "add", "E", "--out", out);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const seed = readFileSync(out, "utf8").trim();
    seeds.push(seed);
    expect(added.stdout).not.toContain(seed);
    expect(added.stdout).toContain(out);
    const e = await registry.get("E");
    expect(added.stdout).toContain(e!.nkey);
    await expect(achd("tenants", "add", "E", "--out", join(root, "secrets", "E2.nk"))).rejects.toThrow(/already registered/);
    const list = (await achd("tenants", "list")).stdout;
    expect(list.split("\n").filter(Boolean).map((l) => l.split(/\s+/)[0])).toEqual(["A", "C", "D", "E"]);
    const conf = (await achd("nats-config")).stdout;
    expect(conf).toContain('"ach.events.*.*.>"');
    expect(conf).toContain(`{ nkey: "${e!.nkey}", permissions: {`);
    expect(conf).toContain('publish: { allow: ["ach.events.E.>", "ach.p.*.E.>"] }');
    expect(conf).not.toContain(B.nkey);
    // The seed works once the engine has reloaded.
    const ncE = await eventually(() => connect({ servers: engine.natsUrl, authenticator: nkeyAuthenticator(enc.encode(seed)), inboxPrefix: "_INBOX_E", reconnect: false }), 10_000, "tenant E admitted");
    await ncE.close();
  });

  it("no seed appears in any stream or bucket, any file the engine wrote, or any log line", async () => {
    const jsm = await jetstream(engine.nc).jetstreamManager();
    let checked = 0;
    for await (const si of jsm.streams.list()) {
      for (let seq = si.state.first_seq; seq <= si.state.last_seq && si.state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(si.config.name, { seq }).catch(() => undefined);
        if (!m) continue;
        checked++;
        const text = Buffer.from(m.data).toString("utf8") + JSON.stringify(m.header ? [...m.header.keys()].map((k) => m.header!.get(k)) : []);
        for (const s of seeds) expect(text.includes(s), `${si.config.name} #${seq}`).toBe(false);
      }
    }
    expect(checked).toBeGreaterThan(300);
    const engineSeed = readFileSync(join(dataDir, "auth", "engine.nk"), "utf8").trim();
    expect(statSync(join(dataDir, "auth", "engine.nk")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, "auth")).mode & 0o777).toBe(0o700);
    for (const f of files(dataDir)) {
      const bytes = readFileSync(f);
      for (const s of seeds) expect(bytes.includes(s), f).toBe(false);
      if (!f.endsWith(join("auth", "engine.nk"))) expect(bytes.includes(engineSeed), f).toBe(false);
    }
    const log = logs.join("");
    expect(log).toContain("NATS authorization reloaded");
    for (const s of [...seeds, engineSeed]) expect(log.includes(s)).toBe(false);
  });
});

describe("auth.mode none (local development)", () => {
  it("starts the embedded server without authorization, generates no credential and warns loudly", async () => {
    const root = mkdtempSync(join(tmpdir(), "achd-noauth-"));
    const logs: string[] = [];
    const config = testConfig("", { nats: { embedded: { port: -1 } }, dataDir: root, http: { enabled: false }, partitions: 4, auth: { mode: "none" } });
    const engine = await startEngine(config, pino({ level: "info" }, { write: (s: string) => void logs.push(s) }));
    try {
      const nc = await connect({ servers: engine.natsUrl, reconnect: false });
      await nc.close();
      expect(logs.find((l) => l.includes('"level":40') && l.includes("auth.mode is none"))).toBeDefined();
      expect(files(root).some((f) => f.includes(join(root, "auth")))).toBe(false);
      expect(readFileSync(join(root, "nats-server.conf"), "utf8")).not.toMatch(/^include /m);
    } finally {
      await engine.stop();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

/**
 * Experiment: pinned-client priority groups (nats-server 2.11+) as a second
 * fence for the engine's partition consumers.
 *
 *   node --import tsx bench/experiments/pinned-client.ts
 *
 * Starts its own nats-server ($ACH_NATS_SERVER, default
 * ~/.cache/achd/nats-server-v2.15.3/nats-server) on a free loopback port in a
 * temp dir and removes both at the end. The "first" puller (A, the lease
 * holder) runs in a child process so it can be frozen with SIGSTOP and
 * resumed with SIGCONT, like a paused or partitioned zombie worker; the
 * "second" puller (B, the new lease holder) runs in this process. Both use
 * consume() with group "achd", as the engine's PartitionConsumer uses
 * consume().
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { AckPolicy, DeliverPolicy, jetstream, type ConsumerInfo, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { natsBinary, startNatsServer } from "../../src/nats/mod.ts";
import { connect, nanos, type NatsConnection } from "@nats-io/transport-node";

const BIN = process.env.ACH_NATS_SERVER ?? natsBinary("reference");
const STREAM = "EV";
const GROUP = "achd";
const PRIORITY_TIMEOUT_MS = 5000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- child: puller A
if (process.argv[2] === "--child") {
  const [, , , port, durable] = process.argv;
  const nc = await connect({ servers: `127.0.0.1:${port}`, name: "puller-A" });
  const js = jetstream(nc);
  const out = (o: object) => process.stdout.write(JSON.stringify({ t: Date.now(), ...o }) + "\n");
  const c = await js.consumers.get(STREAM, durable!);
  const msgs = await c.consume({ max_messages: 100, group: GROUP });
  void (async () => {
    for await (const s of msgs.status()) {
      if (s.type === "next" || s.type === "heartbeat") continue;
      out({ k: "status", s });
    }
  })();
  out({ k: "ready" });
  try {
    for await (const m of msgs) {
      out({ k: "m", seq: m.seq, dseq: m.info.deliverySequence, pin: m.headers?.get("Nats-Pin-Id") ?? "" });
      m.ack();
    }
    out({ k: "end" });
  } catch (err) {
    out({ k: "error", err: String(err) });
  }
  await nc.close();
  process.exit(0);
}

// ---------------------------------------------------------------- parent
type Got = { t: number; seq: number };
/** What CONSUMER.INFO says about the groups (2.11+); not in nats.js 3.4's ConsumerInfo type. */
type Groups = { priority_groups?: { group: string; pinned_client_id?: string; pinned_ts?: string }[] };
type Child = { proc: ChildProcess; got: Got[]; statuses: { t: number; s: unknown }[]; errors: string[]; ready: Promise<void> };

/** The reference nats-server (or ACH_NATS_SERVER), as the engine starts it: a free port, a temp store. */
async function startServer(): Promise<{ port: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "nats-pinned-"));
  const server = await startNatsServer({ host: "127.0.0.1", port: -1, dataDir: dir, binary: BIN, sync: "default", dieWithParent: false });
  return {
    port: server.port,
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function startChild(port: number, durable: string): Child {
  const proc = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--child", String(port), durable], { stdio: ["ignore", "pipe", "inherit"] });
  const c: Child = { proc, got: [], statuses: [], errors: [], ready: Promise.resolve() };
  c.ready = new Promise((resolve) => {
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      const o = JSON.parse(line) as { t: number; k: string; seq?: number; s?: unknown; err?: string };
      if (o.k === "ready") resolve();
      else if (o.k === "m") c.got.push({ t: o.t, seq: o.seq! });
      else if (o.k === "status") c.statuses.push({ t: o.t, s: o.s });
      else if (o.k === "error") c.errors.push(o.err!);
    });
  });
  return c;
}

async function until(f: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (f()) return true;
    await sleep(10);
  }
  return f();
}

async function consumerB(js: JetStreamClient, durable: string, expires?: number) {
  const got: Got[] = [];
  const statuses: { t: number; s: unknown }[] = [];
  const c = await js.consumers.get(STREAM, durable);
  const msgs = await c.consume({ max_messages: 100, group: GROUP, ...(expires ? { expires } : {}) });
  void (async () => {
    for await (const s of msgs.status()) if (s.type !== "next" && s.type !== "heartbeat") statuses.push({ t: Date.now(), s });
  })();
  void (async () => {
    for await (const m of msgs as AsyncIterable<JsMsg>) {
      got.push({ t: Date.now(), seq: m.seq });
      m.ack();
    }
  })();
  return { got, statuses, close: () => msgs.close() };
}

const pinnedConfig = (durable: string) => ({
  durable_name: durable,
  ack_policy: AckPolicy.All,
  deliver_policy: DeliverPolicy.All,
  ack_wait: nanos(30_000),
  max_deliver: -1,
  priority_groups: [GROUP],
  priority_policy: "pinned_client" as const,
  priority_timeout: nanos(PRIORITY_TIMEOUT_MS),
});

/** Publishes `n` messages, `per` every `everyMs`. */
async function publish(js: JetStreamClient, subject: string, n: number, per: number, everyMs: number): Promise<void> {
  for (let i = 0; i < n; i += per) {
    await Promise.all(Array.from({ length: Math.min(per, n - i) }, () => js.publish(subject, "x")));
    await sleep(everyMs);
  }
}

/** Keeps publishing one message every `everyMs` until stopped. */
function trickle(js: JetStreamClient, subject: string, everyMs: number): () => Promise<void> {
  let on = true;
  const done = (async () => {
    while (on) {
      await js.publish(subject, "x");
      await sleep(everyMs);
    }
  })();
  return async () => {
    on = false;
    await done;
  };
}

/**
 * One round on a fresh consumer: A pinned, B waiting; 2000 messages; then A
 * is frozen and B (optionally) unpins; then A is resumed.
 */
async function round(js: JetStreamClient, jsm: JetStreamManager, port: number, durable: string, subject: string, unpin: boolean) {
  await jsm.consumers.add(STREAM, { ...pinnedConfig(durable), filter_subject: subject });
  const a = startChild(port, durable);
  await a.ready;
  await js.publish(subject, "first");
  await until(() => a.got.length > 0, 5000); // A holds the pin
  const b = await consumerB(js, durable);
  await sleep(300);
  // (a) 2000 messages while A keeps pulling
  const t0 = Date.now();
  await publish(js, subject, 2000, 100, 50);
  await until(() => a.got.length + b.got.length >= 2001, 10_000);
  const phaseA = { published: 2000, ms: Date.now() - t0, A: a.got.length - 1, B: b.got.length };
  const infoPinned = (await jsm.consumers.info(STREAM, durable)) as ConsumerInfo & Groups;

  // (b) A stops pulling: SIGSTOP (a paused / partitioned process, connection kept)
  const aBefore = a.got.length;
  const stopTrickle = trickle(js, subject, 20);
  await sleep(200);
  const tStop = Date.now();
  a.proc.kill("SIGSTOP");
  let unpinMs: number | undefined;
  if (unpin) {
    const u0 = Date.now();
    await jsm.consumers.unpin(STREAM, durable, GROUP);
    unpinMs = Date.now() - u0;
  }
  const bBefore = b.got.length;
  await until(() => b.got.length > bBefore, PRIORITY_TIMEOUT_MS * 4);
  const bFirstAfterStop = b.got.length > bBefore ? b.got[bBefore]!.t - tStop : undefined;
  await sleep(1000);

  // (c) A resumes (SIGCONT) while B holds the pin and keeps pulling
  const bBeforeResume = b.got.length;
  const aAtResume = a.got.length;
  const tCont = Date.now();
  a.proc.kill("SIGCONT");
  await sleep(3000);
  await stopTrickle();
  await sleep(1000);
  const aAfter = a.got.filter((g) => g.t >= tCont);
  const bSeqs = new Set(b.got.map((g) => g.seq));
  const aSeqsAfter = aAfter.map((g) => g.seq);
  const infoEnd = (await jsm.consumers.info(STREAM, durable)) as ConsumerInfo & Groups;
  const result = {
    round: unpin ? "b2: B calls unpin right after A freezes" : "b1: no unpin (priority_timeout 5s)",
    a_two_pullers: phaseA,
    pinned_before_stop: (infoPinned.priority_groups ?? []).map((g) => ({ group: g.group, pinned_client_id: g.pinned_client_id, pinned_ts: g.pinned_ts })),
    b_stop: {
      unpin_call_ms: unpinMs,
      ms_until_B_first_msg: bFirstAfterStop,
      A_msgs_in_trickle_before_freeze: aAtResume - aBefore,
      B_first_seq_after_freeze: b.got[bBefore]?.seq,
    },
    c_resume: {
      A_msgs_after_resume: aAfter.length,
      A_msgs_after_resume_also_delivered_to_B: aSeqsAfter.filter((s) => bSeqs.has(s)).length,
      A_after_resume_seq_range: aAfter.length ? [aAfter[0]!.seq, aAfter[aAfter.length - 1]!.seq] : [],
      A_first_after_resume_ms: aAfter.length ? aAfter[0]!.t - tCont : undefined,
      B_msgs_while_A_resumed: b.got.length - bBeforeResume,
      A_statuses: a.statuses.map((x) => ({ ms_from_freeze: x.t - tStop, ...(x.s as object) })),
      A_errors: a.errors,
      B_statuses: b.statuses.map((x) => ({ ms_from_freeze: x.t - tStop, ...(x.s as object) })),
    },
    consumer_end: { num_ack_pending: infoEnd.num_ack_pending, ack_floor: infoEnd.ack_floor.stream_seq, delivered: infoEnd.delivered.stream_seq, priority_groups: infoEnd.priority_groups },
  };
  a.proc.kill("SIGKILL");
  await b.close();
  return result;
}

/** (d) Can an existing consumer without priority groups be updated to have them? And back? */
async function updateTest(nc: NatsConnection, jsm: JetStreamManager) {
  const durable = "plain";
  await jsm.consumers.add(STREAM, { durable_name: durable, ack_policy: AckPolicy.All, filter_subject: "ev.plain" });
  const r: Record<string, unknown> = {};
  try {
    const u = await jsm.consumers.update(STREAM, durable, { priority_groups: [GROUP], priority_policy: "pinned_client", priority_timeout: nanos(PRIORITY_TIMEOUT_MS) });
    r.add_groups = { ok: true, priority_groups: u.config.priority_groups, priority_policy: u.config.priority_policy, priority_timeout_ns: u.config.priority_timeout };
  } catch (err) {
    r.add_groups = { ok: false, err: String(err) };
  }
  try {
    const u = await jsm.consumers.update(STREAM, durable, { priority_timeout: nanos(2000) });
    r.change_timeout = { ok: true, priority_timeout_ns: u.config.priority_timeout };
  } catch (err) {
    r.change_timeout = { ok: false, err: String(err) };
  }
  try {
    const u = await jsm.consumers.update(STREAM, durable, { priority_policy: "none", priority_groups: undefined } as never);
    r.remove_groups = { ok: true, priority_policy: u.config.priority_policy, priority_groups: u.config.priority_groups };
  } catch (err) {
    r.remove_groups = { ok: false, err: String(err) };
  }
  // Removing them: nats.js refuses an update without a non-empty priority_groups array, so ask the server directly.
  try {
    const cur = await jsm.consumers.info(STREAM, durable);
    const { priority_groups: _g, priority_policy: _p, priority_timeout: _t, ...rest } = cur.config;
    const m = await nc.request(`$JS.API.CONSUMER.CREATE.${STREAM}.${durable}`, JSON.stringify({ stream_name: STREAM, config: rest, action: "update" }));
    const body = m.json<{ error?: unknown; config?: { priority_policy?: string; priority_groups?: string[] } }>();
    r.remove_groups_raw = body.error ? { ok: false, error: body.error } : { ok: true, priority_policy: body.config?.priority_policy, priority_groups: body.config?.priority_groups };
  } catch (err) {
    r.remove_groups_raw = { ok: false, err: String(err) };
  }
  // Pulling without a group from a pinned consumer, and with an unknown group.
  await jsm.consumers.add(STREAM, { ...pinnedConfig("pg"), filter_subject: "ev.pg" });
  return r;
}

/** Pull requests that do not name the group, or name another one, on a pinned consumer. */
async function pullWithoutGroup(js: JetStreamClient) {
  await js.publish("ev.pg", "x");
  const c = await js.consumers.get(STREAM, "pg");
  const r: Record<string, unknown> = {};
  for (const [label, opts] of [
    ["no_group", { max_messages: 1, expires: 1000 }],
    ["other_group", { max_messages: 1, expires: 1000, group: "other" }],
  ] as const) {
    try {
      const it = await c.fetch(opts);
      let n = 0;
      for await (const _m of it) n++;
      r[label] = { ok: true, got: n };
    } catch (err) {
      r[label] = { ok: false, err: String(err) };
    }
  }
  return r;
}

/**
 * An idle partition: the holder A (consume(), default expires 30 s) and a
 * second puller B, no messages for 2 x priority_timeout; then 20 messages.
 * Does the idle holder keep the pin?
 */
async function idleHolder(js: JetStreamClient, jsm: JetStreamManager, durable: string, subject: string, expires?: number) {
  await jsm.consumers.add(STREAM, { ...pinnedConfig(durable), filter_subject: subject });
  const a = await consumerB(js, durable, expires);
  await js.publish(subject, "first");
  await until(() => a.got.length > 0, 5000);
  const b = await consumerB(js, durable, expires);
  await sleep(PRIORITY_TIMEOUT_MS * 2);
  await publish(js, subject, 20, 20, 0);
  await until(() => a.got.length + b.got.length >= 21, 5000);
  const r = { consume_expires_ms: expires ?? "default (30000)", idle_ms: PRIORITY_TIMEOUT_MS * 2, A_holder: a.got.length - 1, B_second: b.got.length, A_statuses: a.statuses.map((x) => x.s), B_statuses: b.statuses.map((x) => x.s) };
  await a.close();
  await b.close();
  return r;
}

/**
 * Unpin while the old holder is alive and still pulling (a worker that lost
 * its lease but has not noticed yet): who gets the pin next?
 */
async function unpinRace(js: JetStreamClient, jsm: JetStreamManager, trials: number, unpinFirst: boolean) {
  const wins = { new_holder_B: 0, old_holder_A: 0, split: 0 };
  for (let k = 0; k < trials; k++) {
    const durable = `race${unpinFirst ? "u" : "c"}${k}`;
    const subject = `ev.${durable}`;
    await jsm.consumers.add(STREAM, { ...pinnedConfig(durable), filter_subject: subject });
    const a = await consumerB(js, durable);
    await js.publish(subject, "first");
    await until(() => a.got.length > 0, 5000);
    if (unpinFirst) await jsm.consumers.unpin(STREAM, durable, GROUP);
    const b = await consumerB(js, durable);
    await sleep(200);
    if (!unpinFirst) await jsm.consumers.unpin(STREAM, durable, GROUP);
    await sleep(100);
    await publish(js, subject, 20, 20, 0);
    await until(() => a.got.length + b.got.length >= 21, 5000);
    const an = a.got.length - 1;
    if (an === 0) wins.new_holder_B++;
    else if (b.got.length === 0) wins.old_holder_A++;
    else wins.split++;
    await a.close();
    await b.close();
  }
  return { order: unpinFirst ? "unpin, then B starts consume()" : "B starts consume(), then unpin", trials, ...wins };
}

const server = await startServer();
let nc: NatsConnection | undefined;
try {
  nc = await connect({ servers: `127.0.0.1:${server.port}` });
  console.log(JSON.stringify({ server: nc.info?.version, nats_js_jetstream: "3.4" }));
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: STREAM, subjects: ["ev.>"] });
  console.log(JSON.stringify(await round(js, jsm, server.port, "p1", "ev.p1", false), null, 1));
  console.log(JSON.stringify(await round(js, jsm, server.port, "p2", "ev.p2", true), null, 1));
  console.log(JSON.stringify({ idle_holder: await idleHolder(js, jsm, "p3", "ev.p3") }, null, 1));
  // The same with pull requests that expire (and are renewed) well within priority_timeout.
  console.log(JSON.stringify({ idle_holder: await idleHolder(js, jsm, "p4", "ev.p4", 2000) }, null, 1));
  console.log(JSON.stringify({ unpin_race: await unpinRace(js, jsm, 10, false) }));
  console.log(JSON.stringify({ unpin_race: await unpinRace(js, jsm, 10, true) }));
  console.log(JSON.stringify({ d_update: await updateTest(nc, jsm) }, null, 1));
  console.log(JSON.stringify({ pull_without_group: await pullWithoutGroup(js) }, null, 1));
} finally {
  await nc?.close();
  await server.stop();
}

/**
 * Experiment: atomic batch publish (nats-server 2.12+) for the engine's
 * state writes.
 *
 *   node --import tsx bench/experiments/atomic-batch.ts [rounds=20] [users=500] [sync=default|always]
 *
 * `always` runs the server with `jetstream { sync_interval: always }` (an
 * fsync per write; the durable setting).
 *
 * Starts its own nats-server ($ACH_NATS_SERVER, default
 * ~/.cache/achd/nats-server-v2.15.3/nats-server) on a free loopback port in a
 * temp dir and removes both at the end. The stream is shaped like the
 * engine's state bucket (subjects `$KV.x.>`, one message per subject,
 * `allow_atomic: true`); every write is a compare-and-set on the key's last
 * sequence (`Nats-Expected-Last-Subject-Sequence`), as the engine's FastKv
 * update does.
 *
 * Compared, per round of `users` writes to different keys:
 *  - independent: the engine's own path, src/nats/requests.ts JsRequests
 *    (pipelined publishes, one reply subscription), all awaited together;
 *  - raw atomic batch: the same messages with Nats-Batch-Id /
 *    Nats-Batch-Sequence headers, published without reply, the last with
 *    Nats-Batch-Commit: 1 as a request (one round trip);
 *  - nats.js js.startBatch(): first message as a request, add() without ack,
 *    commit() as a request (two round trips).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { natsBinary, startNatsServer } from "../../src/nats/mod.ts";
import { connect, headers, nuid, type NatsConnection } from "@nats-io/transport-node";
import { JsRequests } from "../../src/nats/requests.ts";

const BIN = process.env.ACH_NATS_SERVER ?? natsBinary("reference");
const ROUNDS = Number(process.argv[2] ?? 20);
const USERS = Number(process.argv[3] ?? 500);
const SYNC = process.argv[4] === "always" ? "always" : "default";
const STREAM = "KV_x";
const enc = new TextEncoder();
// A user state of a realistic size (the engine's states are small JSON documents).
const payload = (i: number, r: number) => enc.encode(JSON.stringify({ v: 1, user: `u${i}`, round: r, counters: { logins: r, points: r * 10 }, unlocked: ["first-login"] }));

/** The reference nats-server (or ACH_NATS_SERVER), as the engine starts it: a free port, a temp store. */
async function startServer(): Promise<{ port: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "nats-batch-"));
  const server = await startNatsServer({ host: "127.0.0.1", port: -1, dataDir: dir, binary: BIN, sync: SYNC, dieWithParent: false });
  return {
    port: server.port,
    stop: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const key = (i: number) => `$KV.x.t1.u${i}`;
type Ack = { stream?: string; seq?: number; batch?: string; count?: number; error?: { code: number; err_code: number; description: string } };

/**
 * An atomic batch sent by hand: every message published without reply, the
 * commit as a request. `expected[i]` (undefined: no header) goes into
 * Nats-Expected-Last-Subject-Sequence of message i.
 */
async function rawBatch(nc: NatsConnection, subjects: string[], data: (i: number) => Uint8Array, expected: (number | undefined)[]): Promise<Ack> {
  const id = nuid.next();
  for (let i = 0; i < subjects.length; i++) {
    const h = headers();
    h.set("Nats-Batch-Id", id);
    h.set("Nats-Batch-Sequence", String(i + 1));
    if (expected[i] !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(expected[i]));
    if (i === subjects.length - 1) {
      h.set("Nats-Batch-Commit", "1");
      const m = await nc.request(subjects[i]!, data(i), { headers: h, timeout: 10_000 });
      return m.json<Ack>();
    }
    nc.publish(subjects[i]!, data(i), { headers: h });
  }
  throw new Error("empty batch");
}

/** The same with nats.js's BatchPublisherImpl (expectations as headers: add() and commit() pass only headers on). */
async function natsJsBatch(js: JetStreamClient, subjects: string[], data: (i: number) => Uint8Array, expected: number[]): Promise<Ack> {
  const hdr = (i: number) => {
    const h = headers();
    h.set("Nats-Expected-Last-Subject-Sequence", String(expected[i]));
    return h;
  };
  const b = await js.startBatch(subjects[0]!, data(0), { expect: { lastSubjectSequence: expected[0]! } });
  for (let i = 1; i < subjects.length - 1; i++) b.add(subjects[i]!, data(i), { headers: hdr(i) });
  const last = subjects.length - 1;
  return (await b.commit(subjects[last]!, data(last), { headers: hdr(last), timeout: 10_000 })) as Ack;
}

function stats(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { n: s.length, median_ms: +q(0.5).toFixed(2), p90_ms: +q(0.9).toFixed(2), min_ms: +s[0]!.toFixed(2), max_ms: +s[s.length - 1]!.toFixed(2) };
}

async function lastSeq(jsm: JetStreamManager, subject: string): Promise<number | undefined> {
  try {
    return (await jsm.streams.getMessage(STREAM, { last_by_subj: subject }))?.seq;
  } catch {
    return undefined;
  }
}

const server = await startServer();
let nc: NatsConnection | undefined;
try {
  nc = await connect({ servers: `127.0.0.1:${server.port}` });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  console.log(JSON.stringify({ server: nc.info?.version, rounds: ROUNDS, users: USERS, sync: SYNC }));
  const si = await jsm.streams.add({ name: STREAM, subjects: ["$KV.x.>"], max_msgs_per_subject: 1, discard: "new" as never, allow_rollup_hdrs: true, deny_delete: true, allow_direct: true, allow_atomic: true });
  console.log(JSON.stringify({ stream_allow_atomic: si.config.allow_atomic }));
  const req = new JsRequests(nc, 10_000);
  const subjects = Array.from({ length: USERS }, (_, i) => key(i));
  // Each key's current sequence (the compare-and-set revision).
  const seqs: number[] = [];
  await Promise.all(subjects.map(async (s, i) => (seqs[i] = (await req.publish(s, payload(i, 0), { lastSubjectSeq: 0 })).seq)));

  // ---------------------------------------------------------------- (a) timing
  const t: Record<string, number[]> = { independent: [], raw_batch: [], natsjs_batch: [], raw_batch_no_cas: [] };
  const check = async (label: string) => {
    for (const i of [0, USERS >> 1, USERS - 1]) {
      const got = await lastSeq(jsm, subjects[i]!);
      if (got !== seqs[i]) throw new Error(`${label}: ${subjects[i]} at ${got}, expected ${seqs[i]}`);
    }
  };
  const fromBatch = (label: string, ack: Ack) => {
    if (ack.error || ack.count !== USERS) throw new Error(`${label}: ${JSON.stringify(ack)}`);
    // A batch is stored as consecutive sequences ending at the commit's.
    subjects.forEach((_, i) => (seqs[i] = ack.seq! - (USERS - 1) + i));
  };
  const variants: [string, (r: number) => Promise<void>][] = [
    ["independent", async (r) => {
      const acks = await Promise.all(subjects.map((s, i) => req.publish(s, payload(i, r), { lastSubjectSeq: seqs[i] })));
      acks.forEach((a, i) => (seqs[i] = a.seq));
    }],
    ["raw_batch", async (r) => fromBatch("raw batch", await rawBatch(nc!, subjects, (i) => payload(i, r), seqs))],
    ["natsjs_batch", async (r) => fromBatch("nats.js batch", await natsJsBatch(js, subjects, (i) => payload(i, r), seqs))],
    // The batch mechanics alone: no compare-and-set header (not what the engine may do; for the cost of the checks).
    ["raw_batch_no_cas", async (r) => fromBatch("raw batch without CAS", await rawBatch(nc!, subjects, (i) => payload(i, r), []))],
  ];
  for (let r = 1; r <= ROUNDS; r++) {
    // Rotate the order every round, so none always runs first (or after the same one).
    for (let k = 0; k < variants.length; k++) {
      const [label, run] = variants[(r + k) % variants.length]!;
      const t0 = performance.now();
      await run(r);
      t[label]!.push(performance.now() - t0);
      await check(label);
    }
  }
  console.log(JSON.stringify({ a_timing_per_round_of_writes: { users: USERS, independent_JsRequests: stats(t.independent!), atomic_batch_raw: stats(t.raw_batch!), atomic_batch_natsjs_startBatch: stats(t.natsjs_batch!), atomic_batch_raw_without_cas_headers: stats(t.raw_batch_no_cas!) } }, null, 1));

  // ---------------------------------------------------------------- (b) one conflict inside a batch
  const streamBefore = (await jsm.streams.info(STREAM)).state.last_seq;
  const wrongAt = USERS >> 1;
  const expected = seqs.map((s, i) => (i === wrongAt ? s - 1 : s));
  const conflict = await rawBatch(nc, subjects, (i) => payload(i, 999), expected);
  const streamAfter = (await jsm.streams.info(STREAM)).state.last_seq;
  const unchanged = (await Promise.all([0, wrongAt - 1, wrongAt, wrongAt + 1, USERS - 1].map(async (i) => (await lastSeq(jsm, subjects[i]!)) === seqs[i]))).every(Boolean);
  console.log(JSON.stringify({ b_one_wrong_expected_seq: { message: wrongAt + 1, of: USERS, commit_reply: conflict, stream_last_seq_before: streamBefore, after: streamAfter, sampled_keys_unchanged: unchanged } }, null, 1));

  // nats.js: does add()'s `expect` option reach the server? (A wrong one that is ignored lets the batch commit.)
  {
    const b = await js.startBatch(subjects[0]!, payload(0, 1000), { expect: { lastSubjectSequence: seqs[0]! } });
    b.add(subjects[1]!, payload(1, 1000), { expect: { lastSubjectSequence: 1 } }); // wrong on purpose
    let r: unknown;
    try {
      r = await b.commit(subjects[2]!, payload(2, 1000));
    } catch (err) {
      r = { threw: String(err) };
    }
    const ok = (r as Ack).seq !== undefined;
    if (ok) {
      const a = r as Ack;
      [0, 1, 2].forEach((i) => (seqs[i] = a.seq! - 2 + i));
    }
    console.log(JSON.stringify({ b_natsjs_add_expect_option: { wrong_expect_passed_as_add_option: r, batch_committed: ok } }));
  }

  // Expected-last-subject-sequence on two messages of the same subject in one batch (the second can only name a sequence the batch has not stored yet).
  {
    const s = subjects[3]!;
    const r = await rawBatch(nc, [s, s], (i) => payload(3, 2000 + i), [seqs[3], seqs[3]]);
    console.log(JSON.stringify({ b_same_key_twice_in_batch: r }));
    if (r.seq !== undefined) seqs[3] = r.seq;
  }

  // Creates (expected last sequence 0: the key has no message yet) in a batch, as FastKv.create sends them.
  {
    const fresh = [0, 1, 2].map((i) => `$KV.x.t1.new${i}`);
    const r = await rawBatch(nc, fresh, (i) => payload(i, 0), [0, 0, 0]);
    console.log(JSON.stringify({ b_creates_in_batch_expected_0: r }));
  }

  // ---------------------------------------------------------------- largest batch by default
  const sizes: Record<string, unknown> = {};
  for (const n of [1000, 1001]) {
    const subs = Array.from({ length: n }, (_, i) => `$KV.x.big.k${i}`);
    const r = await rawBatch(nc, subs, () => enc.encode("x"), []);
    sizes[n] = r.error ? { ok: false, error: r.error } : { ok: true, count: r.count };
  }
  console.log(JSON.stringify({ b_max_batch_default: sizes }, null, 1));

  // An existing bucket-like stream created without allow_atomic: can it be turned on in place?
  {
    await jsm.streams.add({ name: "KV_y", subjects: ["$KV.y.>"], max_msgs_per_subject: 1 });
    let r: unknown;
    try {
      const u = await jsm.streams.update("KV_y", { allow_atomic: true });
      r = { ok: true, allow_atomic: u.config.allow_atomic };
    } catch (err) {
      r = { ok: false, err: String(err) };
    }
    const h = headers();
    h.set("Nats-Batch-Id", nuid.next());
    h.set("Nats-Batch-Sequence", "1");
    h.set("Nats-Batch-Commit", "1");
    await jsm.streams.add({ name: "KV_z", subjects: ["$KV.z.>"], max_msgs_per_subject: 1 });
    const refused = (await nc.request("$KV.z.a", enc.encode("x"), { headers: h, timeout: 5000 })).json<Ack>();
    console.log(JSON.stringify({ enable_allow_atomic_by_update: r, batch_to_stream_without_allow_atomic: refused }));
  }
  req.close();
} finally {
  await nc?.close();
  await server.stop();
}

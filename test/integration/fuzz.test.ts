/**
 * The fuzz suite (issue 12): generated hostile inputs, mixed with valid
 * events, thrown at both doors of a real engine — half published as raw
 * bytes over NATS, half posted over HTTP — then checked:
 *
 * 1. no HTTP answer is a 5xx, the engine still runs (its workers hold every
 *    partition, `/readyz` is 200) and nothing was an unhandled rejection;
 * 2. every rejection is in the DLQ with its reason: HTTP outcomes through
 *    their `dead_letter_seq`, unreadable bodies as unreferenced letters, and
 *    each NATS input (found by its `X-Fuzz` header) exactly when the worker's
 *    own decoding, run offline on what the server stored, rejects it;
 * 3. every accepted event is evaluated: the engine's unlocks equal
 *    `simulate` over the accepted events and `replayStream` over the stored
 *    stream. The rules are commutative (no sequences, no negative sums), so
 *    arrival order cannot change them.
 *
 * `npm test` runs 400 inputs; the large run:
 *
 *   ACH_FUZZ_INPUTS=10000 npx vitest run test/integration/fuzz.test.ts
 *
 * Each run prints its seed; `ACH_SEED=<seed>` reproduces the inputs.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { headers } from "@nats-io/transport-node";
import pLimit from "p-limit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import type { Engine } from "../../src/engine.ts";
import { Streams } from "../../src/nats/mod.ts";
import { DEAD_LETTER_MAX_BYTES, DlqHeaders } from "../../src/pipeline/mod.ts";
import { replayStream } from "../../src/replay/mod.ts";
import { loadRules, type Progress } from "../../src/rules/mod.ts";
import { simulate, userProgress } from "../../src/sim/mod.ts";
import { apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { fixedSpecs, httpEventFate, httpRequestFate, materialize, natsFate, specArb, stealMsgIds, type Fate, type FuzzInput } from "../helpers/fuzz.ts";
import { jsonDepth } from "../../src/api/body.ts";
import { drained, SERVER_2_10, startTestNats, type TestNats } from "../helpers/nats.ts";
import { storedUnlocks } from "../helpers/stream.ts";

const INPUTS = Number(process.env.ACH_FUZZ_INPUTS ?? 400);
const SEED = Number(process.env.ACH_SEED ?? Date.now() % 1_000_000);
const P = 4;
/** Time allowed for the whole run: generous per input on a loaded two-core machine. */
const BUDGET_MS = Math.max(120_000, INPUTS * 120);

/**
 * Commutative rules only: counts with filters, a non-negative sum with tiers, a max, a daily streak, a
 * composite of achievements. Each has a top tier out of reach, so every user's progress shows the exact
 * count, sum, max or streak the events gave (a lost or doubled event shows there even without an unlock).
 */
const RULES = [
  { id: "lessons", type: "count", event: "lesson.completed", tiers: [{ name: "three", target: 3 }, { name: "ten", target: 10 }, { name: "fifty", target: 50 }, { name: "max", target: 1_000_000 }] },
  { id: "long-lessons", type: "count", event: "lesson.completed", where: { "payload.duration_seconds": { gte: 600 } }, tiers: [{ name: "three", target: 3 }, { name: "max", target: 1_000_000 }] },
  { id: "pro-views", type: "count", event: ["page.viewed", "team.invited"], where: { any: [{ "attributes.plan": { in: ["pro", "team"] } }, { source: "mobile-app" }] }, tiers: [{ name: "two", target: 2 }, { name: "max", target: 1_000_000 }] },
  { id: "spender", type: "threshold", event: "purchase.placed", field: "payload.amount", aggregate: "sum", where: { "payload.amount": { gte: 0 } }, tiers: [{ name: "bronze", target: 100 }, { name: "silver", target: 1000 }, { name: "gold", target: 1_000_000 }, { name: "max", target: 1e15 }] },
  { id: "big-ticket", type: "threshold", event: "purchase.placed", field: "payload.amount", aggregate: "max", tiers: [{ name: "big", target: 250 }, { name: "max", target: 1e15 }] },
  { id: "daily", type: "streak", event: "lesson.completed", period: "day", tiers: [{ name: "three", target: 3 }, { name: "max", target: 36_500 }] },
  { id: "constructor", type: "count", event: "team.invited", tiers: [{ name: "one", target: 1 }, { name: "max", target: 1_000_000 }] },
  { id: "all-rounder", type: "composite", of: ["lessons:three", "spender:bronze", "constructor:one"] },
];

type NatsResult = { input: FuzzInput; storedAt: number; seq?: number; duplicate?: boolean; error?: string };
type Outcome = { index: number; status: string; reason?: string; dead_letter_seq?: number; dead_letter?: string };
type HttpRequest = { inputs: FuzzInput[]; form: "single" | "array" | "wrapped" | "raw"; body: Uint8Array };
type HttpResult = { req: HttpRequest; sentAt: number; status: number; json?: { error?: string; results?: Outcome[] } & Partial<Outcome>; error?: string };
type Letter = { seq: number; reason: string; origin: string; xfuzz: string | undefined; subject: string; truncated: string | undefined; bytes: number; forged: boolean };

/** Groups HTTP inputs into requests of 1–25 events; raw bodies, bodies too deep for a batch and huge ones go alone. */
function httpRequests(inputs: FuzzInput[], sizes: number[], maxDepth: number, maxBodyBytes: number): HttpRequest[] {
  const out: HttpRequest[] = [];
  let open: FuzzInput[] = [];
  let bytes = 0;
  let k = 0;
  const enc = new TextEncoder();
  const flush = () => {
    if (!open.length) return;
    const texts = open.map((i) => Buffer.from(i.body).toString("utf8"));
    const wrapped = (sizes[k % sizes.length]! + open.length) % 3 === 0;
    const single = open.length === 1 && sizes[k % sizes.length]! % 2 === 0;
    const form = single ? "single" : wrapped ? "wrapped" : "array";
    const text = form === "single" ? texts[0]! : form === "wrapped" ? `{"events":[${texts.join(",")}]}` : `[${texts.join(",")}]`;
    out.push({ inputs: open, form, body: enc.encode(text) });
    open = [];
    bytes = 0;
    k++;
  };
  for (const input of inputs) {
    const text = Buffer.from(input.body).toString("utf8");
    const raw = input.labels.some((l) => l.startsWith("raw:"));
    if (raw || jsonDepth(text, maxDepth) + 2 > maxDepth || input.body.length > maxBodyBytes / 2) {
      flush();
      out.push({ inputs: [input], form: raw ? "raw" : "single", body: input.body });
      continue;
    }
    if (bytes + input.body.length > maxBodyBytes * 0.9) flush();
    open.push(input);
    bytes += input.body.length;
    if (open.length >= sizes[k % sizes.length]!) flush();
  }
  flush();
  return out;
}

describe(`fuzz: ${INPUTS} hostile and valid inputs over NATS and HTTP (seed ${SEED})`, () => {
  let nats: TestNats;
  let engine: Engine;
  let rulesDir: string;
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => void unhandled.push(err);
  const natsResults: NatsResult[] = [];
  const httpResults: HttpResult[] = [];
  const letters = new Map<number, Letter>();
  let unlockIds: string[] = [];
  const timing: Record<string, number> = {};
  const summary: Record<string, unknown> = {};

  beforeAll(async () => {
    console.log(`fuzz seed ${SEED}, ${INPUTS} inputs (ACH_SEED=${SEED} ACH_FUZZ_INPUTS=${INPUTS} reproduces it)`);
    process.on("unhandledRejection", onUnhandled);
    const t0 = Date.now();
    rulesDir = mkdtempSync(join(tmpdir(), "achd-fuzz-rules-"));
    writeFileSync(join(rulesDir, "rules.yaml"), stringify({ rules: RULES }));
    nats = await startTestNats(P);
    engine = await startTestEngine(nats.url, {
      rules: rulesDir,
      partitions: P,
      // Limits on the pace are not under test here: the inputs are.
      http: { port: 0, rateLimit: { perKey: 0, perTenant: 0 }, quota: { eventsPerSecond: 0, burst: 0 } },
    });
    const { config } = engine;
    timing.start = Date.now() - t0;

    // Generate: the named oversized cases, then the sampled ones, numbered in order.
    const fixed = fixedSpecs();
    const specs = [...fixed, ...fc.sample(specArb, { seed: SEED, numRuns: Math.max(0, INPUTS - fixed.length) })];
    const inputs = specs.map((spec, n) => materialize(spec, n, P));
    stealMsgIds(inputs);
    const sizes = fc.sample(fc.integer({ min: 1, max: 25 }), { seed: SEED + 1, numRuns: 64 });
    const requests = httpRequests(
      inputs.filter((i) => i.via === "http"),
      sizes,
      config.http.maxDepth,
      config.http.maxBodyBytes,
    );
    // One request over http.maxBodyBytes (413), once per run.
    const big = fixed[0]!;
    requests.push({ inputs: [], form: "single", body: new TextEncoder().encode(`[${Array.from({ length: 4 }, () => Buffer.from(materialize(big, -1, P).body).toString("utf8")).join(",")}]`) });

    // Send, interleaved in input order, a few at a time.
    const t1 = Date.now();
    const limit = pLimit(8);
    const byFirst = new Map(requests.map((r) => [r.inputs[0]?.n ?? Infinity, r]));
    const ops: Promise<void>[] = [];
    for (const input of inputs) {
      if (input.via === "nats") {
        ops.push(
          limit(async () => {
            const h = headers();
            for (const [k, v] of input.headers) h.set(k, v);
            if (input.msgId) h.set("Nats-Msg-Id", input.msgId);
            const r: NatsResult = { input, storedAt: Date.now() };
            try {
              const ack = await nats.js.publish(input.subject, input.body, { headers: h, timeout: 20_000 });
              r.seq = ack.seq;
              r.duplicate = ack.duplicate;
            } catch (err) {
              r.error = (err as Error).message;
            }
            natsResults.push(r);
          }),
        );
      } else {
        const req = byFirst.get(input.n);
        if (req) ops.push(limit(() => post(req)));
      }
    }
    const last = requests.at(-1)!;
    ops.push(limit(() => post(last)));
    await Promise.all(ops);
    timing.send = Date.now() - t1;

    const t2 = Date.now();
    await eventually(() => drained(nats.jsm, P), BUDGET_MS, "all partitions drained");
    timing.drain = Date.now() - t2;

    // Read every dead letter and every unlock.
    const t3 = Date.now();
    const c = await nats.js.consumers.get(Streams.Dlq);
    const total = (await c.info()).num_pending;
    if (total > 0) {
      const it = await c.consume();
      for await (const m of it) {
        const h = m.headers;
        letters.set(m.seq, {
          seq: m.seq,
          reason: h?.get(DlqHeaders.Reason) ?? "",
          origin: h?.get(DlqHeaders.Origin) ?? "",
          xfuzz: h?.get("X-Fuzz") || undefined,
          subject: h?.get(DlqHeaders.Subject) ?? "",
          truncated: h?.get(DlqHeaders.Truncated) || undefined,
          bytes: m.data.length,
          forged: h?.get(DlqHeaders.Subject) === "ach.events.acme.u0.forged" || h?.get(DlqHeaders.Reason) === "forged",
        });
        if (letters.size >= total) break;
      }
      await it.close();
    }
    unlockIds = (await storedUnlocks(nats.nc, nats.js)).map((u) => u.unlock_id);
    timing.collect = Date.now() - t3;
  }, BUDGET_MS * 2);

  async function post(req: HttpRequest): Promise<void> {
    const r: HttpResult = { req, sentAt: Date.now(), status: 0 };
    try {
      const res = await apiFetch(engine, "/v1/events", { method: "POST", headers: { "content-type": "application/json" }, body: Buffer.from(req.body) });
      r.status = res.status;
      const text = await res.text();
      try {
        r.json = JSON.parse(text) as HttpResult["json"];
      } catch {
        r.error = `answer is not JSON: ${text.slice(0, 200)}`;
      }
    } catch (err) {
      r.error = String((err as Error).cause ?? err);
    }
    httpResults.push(r);
  }

  afterAll(async () => {
    process.off("unhandledRejection", onUnhandled);
    console.log(`fuzz seed ${SEED}: ${JSON.stringify({ ...summary, timing_ms: timing })}`);
    await engine?.stop();
    await nats?.cleanup();
    if (rulesDir) rmSync(rulesDir, { recursive: true, force: true });
  });

  const cfg = () => engine.config;
  const natsFateOf = (r: NatsResult): Fate => natsFate(r.input, { partitions: P, maxBytes: cfg().events.maxBytes, limits: cfg().limits, storedAt: r.storedAt });
  /** The route's events of a request, with each event's expected fate and the outcome it got. */
  const eventsOf = (r: HttpResult) => {
    const want = httpRequestFate(r.req.body, { maxBodyBytes: cfg().http.maxBodyBytes, maxDepth: cfg().http.maxDepth, maxBatch: cfg().http.maxBatch });
    const outcomes: Outcome[] = r.status === 422 && r.json ? [r.json as Outcome] : (r.json?.results ?? []);
    return { want, events: (want.events ?? []).map((raw, i) => ({ raw, fate: httpEventFate(raw, { maxBytes: cfg().events.maxBytes, limits: cfg().limits, storedAt: r.sentAt }), outcome: outcomes.find((o) => o.index === i), input: r.req.form === "raw" ? r.req.inputs[0] : r.req.inputs[i] })) };
  };
  const describeInput = (i: FuzzInput | undefined) => (i ? `#${i.n} ${i.via} [${i.labels.join(", ")}] ${Buffer.from(i.body.subarray(0, 300)).toString("utf8")}` : "(no input)");

  it("answers every request below 500, and the engine keeps running", async () => {
    expect(unhandled.map(String), "unhandled rejections").toEqual([]);
    // A body over http.maxBodyBytes may be cut off (413) while it is still being sent: the client then sees a reset.
    const fivexx = httpResults.filter((r) => r.status >= 500 || (r.status === 0 && r.req.body.length <= cfg().http.maxBodyBytes));
    expect(fivexx.map((r) => `${r.status} ${r.error ?? JSON.stringify(r.json).slice(0, 300)} ← ${describeInput(r.req.inputs[0])}`), "5xx answers or failed requests").toEqual([]);
    expect(engine.workers.length, "partitions this engine's workers hold").toBe(P);
    expect((await fetch(`${engine.httpUrl}/readyz`)).status).toBe(200);
    const status = (await (await apiFetch(engine, "/v1/status")).json()) as { partitions: { partition: number; owner: string | null }[] };
    expect(status.partitions.filter((p) => !p.owner), "partitions without an owner").toEqual([]);
    expect(engine.stats.deadLetterFailures, "rejected events the DLQ could not take").toBe(0);
  }, BUDGET_MS);

  it("answers each request and each event as the contract says", () => {
    const wrong: string[] = [];
    const statuses: Record<string, number> = {};
    for (const r of httpResults) {
      const { want, events } = eventsOf(r);
      const key = `${r.status}${r.json?.error && r.status !== 200 ? ` ${r.json.error}` : ""}`;
      statuses[key] = (statuses[key] ?? 0) + 1;
      const expected = want.status === 200 && want.single && events[0]!.fate.ok === false ? 422 : want.status;
      if (r.status !== expected || (want.error && r.json?.error !== want.error)) {
        // A body over maxBodyBytes may also be cut off before its answer is read.
        if (!(want.status === 413 && r.status === 0)) wrong.push(`request answered ${r.status} ${r.json?.error ?? r.error ?? ""}, expected ${expected} ${want.error ?? ""} ← ${describeInput(r.req.inputs[0])}`);
        continue;
      }
      for (const e of events) {
        const o = e.outcome;
        const got = !o ? "(no outcome)" : o.status === "rejected" ? `rejected ${o.reason}` : o.status;
        const exp = e.fate.ok ? "accepted" : `rejected ${e.fate.reason}`;
        if (got !== exp) wrong.push(`event answered ${got}, expected ${exp} ← ${describeInput(e.input)}`);
      }
    }
    summary.http_answers = statuses;
    expect(wrong.slice(0, 30), `${wrong.length} answers differ from the contract`).toEqual([]);
  }, BUDGET_MS);

  it("keeps every rejected input in the DLQ with its reason, and nothing else", async () => {
    const problems: string[] = [];
    const rejects: Record<string, number> = {};
    const count = (reason: string) => (rejects[reason] = (rejects[reason] ?? 0) + 1);
    // HTTP: each rejected event's letter, through its dead_letter_seq.
    const referenced = new Set<number>();
    for (const r of httpResults) {
      for (const e of eventsOf(r).events) {
        const o = e.outcome;
        if (o?.status !== "rejected") continue;
        count(o.reason!);
        if (o.dead_letter_seq === undefined) {
          problems.push(`HTTP ${o.reason} not kept (${o.dead_letter ?? "no dead_letter_seq"}) ← ${describeInput(e.input)}`);
          continue;
        }
        referenced.add(o.dead_letter_seq);
        const l = letters.get(o.dead_letter_seq);
        const size = Buffer.byteLength(JSON.stringify(e.raw ?? null));
        if (!l) problems.push(`HTTP ${o.reason}: dead letter ${o.dead_letter_seq} does not exist ← ${describeInput(e.input)}`);
        else if (l.reason !== o.reason || l.origin !== "http") problems.push(`HTTP ${o.reason}: dead letter ${l.seq} says ${l.reason} (${l.origin}) ← ${describeInput(e.input)}`);
        else if (l.bytes !== Math.min(size, DEAD_LETTER_MAX_BYTES) || (l.truncated !== undefined) !== size > DEAD_LETTER_MAX_BYTES) problems.push(`HTTP ${o.reason}: dead letter ${l.seq} keeps ${l.bytes} bytes (truncated ${l.truncated}) of ${size} ← ${describeInput(e.input)}`);
      }
    }
    // HTTP: unreadable bodies (bad_json, too_deep) are kept, unreferenced.
    const unreadable = httpResults.filter((r) => r.status === 400 && (r.json?.error === "bad_json" || r.json?.error === "too_deep"));
    for (const r of unreadable) count(`request ${r.json!.error!}`);
    const loose = [...letters.values()].filter((l) => l.origin === "http" && !referenced.has(l.seq));
    const key = (reason: string, bytes: number) => `${reason}/${Math.min(bytes, DEAD_LETTER_MAX_BYTES)}`;
    expect(loose.map((l) => key(l.reason, l.bytes)).sort(), "letters of unreadable HTTP bodies").toEqual(unreadable.map((r) => key(r.json!.error!, r.req.body.length)).sort());

    // NATS: exactly the inputs the worker's decoding rejects have a letter, with its reason.
    const byFuzz = new Map<string, Letter[]>();
    for (const l of letters.values()) {
      if (l.origin !== "worker") continue;
      if (l.forged) problems.push(`dead letter ${l.seq} carries a producer's forged Ach-* header`);
      if (l.xfuzz === undefined) problems.push(`worker dead letter ${l.seq} (${l.reason}, ${l.subject}) is not one of the NATS inputs: an event HTTP accepted was rejected by the worker`);
      else byFuzz.set(l.xfuzz, [...(byFuzz.get(l.xfuzz) ?? []), l]);
    }
    const maxPayload = nats.nc.info?.max_payload ?? 1_048_576;
    for (const r of natsResults) {
      const mine = byFuzz.get(String(r.input.n)) ?? [];
      byFuzz.delete(String(r.input.n));
      if (r.error !== undefined) {
        // From 2.10 on the stream maps ach.events itself and takes nothing published on ach.p directly: no stream answers.
        const unstored = SERVER_2_10 && r.input.subject.startsWith("ach.p.") && /no responders|jetstream is not enabled/i.test(r.error);
        if (unstored) count("nats ach.p direct publish (no stream on 2.10+)");
        else if (r.input.body.length <= maxPayload) problems.push(`NATS publish failed: ${r.error} ← ${describeInput(r.input)}`);
        else count("nats max_payload (client refused)");
        continue;
      }
      if (r.duplicate) {
        // Only a stolen msg id can repeat one, when its victim's HTTP request happened to be stored first.
        if (r.input.labels.some((l) => l.startsWith("msg-id:stolen"))) count("nats duplicate (stolen msg id, victim first)");
        else problems.push(`NATS publish answered duplicate (unique msg ids) ← ${describeInput(r.input)}`);
        if (mine.length) problems.push(`NATS input dropped as a duplicate has ${mine.length} letters ← ${describeInput(r.input)}`);
        continue;
      }
      const fate = natsFateOf(r);
      if (fate.ok) {
        if (mine.length) problems.push(`NATS input expected accepted has ${mine.map((l) => `letter ${l.seq} ${l.reason}`).join(", ")} ← ${describeInput(r.input)}`);
        continue;
      }
      count(fate.reason);
      const kept = Math.min(r.input.body.length, DEAD_LETTER_MAX_BYTES);
      if (mine.length === 1 && (mine[0]!.bytes !== kept || (mine[0]!.truncated !== undefined) !== r.input.body.length > DEAD_LETTER_MAX_BYTES)) problems.push(`NATS ${fate.reason}: dead letter ${mine[0]!.seq} keeps ${mine[0]!.bytes} bytes (truncated ${mine[0]!.truncated}) of ${r.input.body.length} ← ${describeInput(r.input)}`);
      if (mine.length !== 1 || mine[0]!.reason !== fate.reason) problems.push(`NATS input expected ${fate.reason} has ${mine.length ? mine.map((l) => `letter ${l.seq} ${l.reason}`).join(", ") : "no dead letter"} ← ${describeInput(r.input)}`);
    }
    for (const [n, ls] of byFuzz) problems.push(`letters ${ls.map((l) => l.seq).join(",")} for X-Fuzz ${n}, which is no NATS input`);
    summary.rejects_by_reason = rejects;
    summary.stolen_msg_ids = natsResults.filter((r) => r.input.labels.some((l) => l.startsWith("msg-id:stolen"))).length;
    summary.dead_letters = letters.size;
    expect(problems.slice(0, 30), `${problems.length} problems`).toEqual([]);

    // The API lists the same letters, page by page, and shows one with its headers.
    const listed: { seq: number; reason: string }[] = [];
    for (let from = 1; ; ) {
      const res = await apiFetch(engine, `/v1/dlq?limit=1000&from=${from}`);
      expect(res.status).toBe(200);
      const page = ((await res.json()) as { dead_letters: { seq: number; reason: string }[] }).dead_letters;
      if (!page.length) break;
      listed.push(...page);
      from = page.at(-1)!.seq + 1;
    }
    expect(listed.map((l) => `${l.seq} ${l.reason}`)).toEqual([...letters.values()].map((l) => `${l.seq} ${l.reason}`));
    const sample = [...letters.values()].filter((l) => l.xfuzz !== undefined).slice(0, 10);
    for (const l of sample) {
      const one = (await (await apiFetch(engine, `/v1/dlq/${l.seq}`)).json()) as { reason: string; headers: Record<string, string[]> };
      expect([one.reason, one.headers["X-Fuzz"]]).toEqual([l.reason, [l.xfuzz]]);
    }
  }, BUDGET_MS);

  it("evaluates every accepted event: the engine, simulate and replay agree on the unlocks", async () => {
    // The accepted events in input order, each with the time it was published.
    const accepted: { n: number; i: number; raw: unknown; at: number }[] = [];
    for (const r of natsResults) {
      if (r.error !== undefined || r.duplicate || !natsFateOf(r).ok) continue;
      accepted.push({ n: r.input.n, i: 0, raw: JSON.parse(Buffer.from(r.input.body).toString("utf8")), at: r.storedAt });
    }
    for (const r of httpResults) {
      for (const [i, e] of eventsOf(r).events.entries()) {
        if (e.outcome?.status === "accepted") accepted.push({ n: r.req.inputs[0]?.n ?? -1, i, raw: e.raw, at: r.sentAt });
      }
    }
    accepted.sort((a, b) => a.n - b.n || a.i - b.i);
    const book = loadRules(rulesDir);
    const sim = simulate(
      accepted.map((a) => a.raw),
      book,
      cfg().worker.recentIds,
      [],
      { limits: cfg().limits, storedAt: (i) => accepted[i]!.at },
    );
    const replay = await replayStream(nats.js, nats.jsm, { book, maxBytes: cfg().events.maxBytes, partitions: P, limits: cfg().limits, recentIds: cfg().worker.recentIds, threads: 1 });
    const natsRejected = natsResults.filter((r) => r.error === undefined && !r.duplicate && !natsFateOf(r).ok).length;
    const byAchievement = new Map<string, number>();
    for (const u of sim.unlocks) byAchievement.set(`${u.achievement_id}${u.tier ? `:${u.tier}` : ""}`, (byAchievement.get(`${u.achievement_id}${u.tier ? `:${u.tier}` : ""}`) ?? 0) + 1);
    Object.assign(summary, {
      inputs: INPUTS,
      via_nats: natsResults.length,
      via_http: httpResults.reduce((n, r) => n + r.req.inputs.length, 0),
      http_requests: httpResults.length,
      accepted: accepted.length,
      stored_events: replay.events,
      unlocks: unlockIds.length,
      unlocks_by_achievement: Object.fromEntries(byAchievement),
    });
    expect(sim.rejected.map((r) => `${r.rejection.code} ${r.rejection.message.slice(0, 200)} ← input ${accepted[r.index]!.n}`), "accepted events simulate rejects").toEqual([]);
    expect(new Set(unlockIds).size, "an unlock stored twice").toBe(unlockIds.length);
    expect([...unlockIds].sort(), "engine vs simulate").toEqual(sim.unlocks.map((u) => u.unlock_id).sort());
    expect(replay.unlocks.map((u) => u.unlock_id).sort(), "replay vs simulate").toEqual(sim.unlocks.map((u) => u.unlock_id).sort());
    expect([replay.events, replay.rejected], "stored events, and those replay rejects").toEqual([accepted.length + natsRejected, natsRejected]);
    expect(unlockIds.length, "the valid events unlock something").toBeGreaterThan(0);
    // Every user's progress as the API shows it (exact counts, sums, maxima, streaks) equals the simulation's.
    const now = Date.now();
    // Sorted by achievement: the registry and the offline book list rules in different orders.
    const byId = <T extends { achievement_id: string; tier: string | null }>(ps: T[]) => [...ps].sort((a, b) => `${a.achievement_id}:${a.tier}`.localeCompare(`${b.achievement_id}:${b.tier}`));
    const want = userProgress(sim, book, now).map((w) => ({ ...w, in_progress: byId(w.in_progress) }));
    const got = await Promise.all(
      want.map(async (w) => {
        const res = await apiFetch(engine, `/v1/tenants/${w.tenant_id}/users/${w.user_id}/achievements`);
        const a = (await res.json()) as { unlocked: { achievement_id: string; tier: string | null }[]; in_progress: Progress[] };
        return { tenant_id: w.tenant_id, user_id: w.user_id, unlocked: a.unlocked.map((u) => (u.tier ? `${u.achievement_id}:${u.tier}` : u.achievement_id)).sort(), in_progress: byId(a.in_progress) };
      }),
    );
    expect(got, "progress: engine (API) vs simulate").toEqual(want);
  }, BUDGET_MS);
});

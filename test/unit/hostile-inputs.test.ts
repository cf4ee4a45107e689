import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { emptyEvalState, evaluate, progressOf, RULE_ID, RuleBook, RuleSchema, type Rule, type Unlock } from "../../src/rules/mod.ts";
import { validateEvent } from "../../src/events/mod.ts";
import { decodeState, emptyUserState, encodeState } from "../../src/core/mod.ts";
import { enginePath, progressByUser, replayPath, simulatePath, stored, type StoredMsg } from "../helpers/three-paths.ts";

const STORED = Date.parse("2026-11-30T12:00:00Z");
const DAY = 86_400_000;

const rule = (r: Record<string, unknown>): Rule => RuleSchema.parse({ version: 1, ...r });

const SPENDER = { id: "spender", type: "threshold", event: "purchase.placed", field: "payload.amount", aggregate: "sum", tiers: [{ name: "bronze", target: 100 }, { name: "silver", target: 1000 }, { name: "gold", target: 1e12 }] };
const ONBOARDED = { id: "onboarded", type: "sequence", steps: [{ event: "profile.completed" }, { event: "tutorial.finished" }, { event: "first_project.created" }] };

function body(i: number, type: string, at: string, payload = "{}", user = "u1", attributes = '{"plan":"pro"}'): string {
  return `{"event_id":"e${i}","event_type":"${type}","tenant_id":"t","user_id":"${user}","occurred_at":"${at}","payload":${payload},"attributes":${attributes}}`;
}

/** Messages stored a second apart, from bodies in order. */
function messages(bodies: string[], start = STORED): StoredMsg[] {
  return bodies.map((text, i) => stored(text, i + 1, start + i * 1000));
}

function keys(unlocks: Unlock[]): string[] {
  return unlocks.map((u) => `${u.user_id}/${u.achievement_id}${u.tier ? `:${u.tier}` : ""}@${u.unlocked_at}`);
}

/** Runs all three paths and requires the same unlocks, rejections, stored state and progress; returns the engine's. */
function agree(msgs: StoredMsg[], book: RuleBook) {
  const engine = enginePath(msgs, book);
  const replay = replayPath(msgs, book);
  const sim = simulatePath(msgs, book);
  expect(replay.unlocks).toEqual(engine.unlocks);
  expect(sim.unlocks).toEqual(engine.unlocks);
  expect([replay.rejected, sim.rejected]).toEqual([engine.rejected, engine.rejected]);
  // What the simulator keeps in memory is exactly what the KV bucket would hold.
  for (const [k, s] of sim.states) expect(decodeState(encodeState({ ...s, outbox: [] })).eval, k).toEqual(engine.states.get(k)?.eval ?? emptyEvalState());
  // A user whose events changed nothing has no stored state: the API shows an empty one.
  const users = new Map([...sim.states.keys()].map((k) => [k, engine.states.get(k) ?? emptyUserState()]));
  expect(progressByUser(sim.states, book, STORED)).toEqual(progressByUser(users, book, STORED));
  return engine;
}

describe("regressions from issue 12, through the workers' path, replay and simulate alike", () => {
  const book = RuleBook.fromRules([rule(SPENDER), rule(ONBOARDED)]);

  it("amount -1e308 then 150 unlocks bronze, with progress 150 (it showed current: null in simulate and replay)", () => {
    const msgs = messages([body(1, "purchase.placed", "2026-11-30T10:00:00Z", '{"amount":-1e308}'), body(2, "purchase.placed", "2026-11-30T10:01:00Z", '{"amount":150}')]);
    const engine = agree(msgs, book);
    expect(keys(engine.unlocks)).toEqual(["u1/spender:bronze@2026-11-30T10:01:00.000Z"]);
    const spender = progressByUser(engine.states, book, STORED)["t.u1"]!.find((p) => p.achievement_id === "spender")!;
    expect([spender.tier, spender.current]).toEqual(["silver", 150]);
  });

  it("amount 1e308 (and 1e400, Infinity once parsed) is read as missing: no tier unlocks", () => {
    const msgs = messages([body(1, "purchase.placed", "2026-11-30T10:00:00Z", '{"amount":1e308}'), body(2, "purchase.placed", "2026-11-30T10:01:00Z", '{"amount":1e400}')]);
    expect(agree(msgs, book).unlocks).toEqual([]);
  });

  it("amounts up to 1e15 are in range: totals past 2^53 millionths stay exact and order-independent", () => {
    const whale = RuleBook.fromRules([rule({ ...SPENDER, id: "whale", tiers: undefined, target: 1e15 })]);
    const amounts = ["4e14", "0.000001", "4e14", "0.000002"];
    const run = (list: string[]) => agree(messages(list.map((a, i) => body(i + 1, "purchase.placed", "2026-11-30T10:00:00Z", `{"amount":${a}}`))), whale);
    expect(run(amounts).states.get("t.u1")!.eval.rules.whale).toMatchObject({ k: "sum", v: "800000000000000000003" });
    expect(run([...amounts].reverse()).states.get("t.u1")!.eval.rules.whale).toMatchObject({ k: "sum", v: "800000000000000000003" });
    expect(keys(run(["1e15"]).unlocks)).toEqual(["u1/whale@2026-11-30T10:00:00.000Z"]);
  });

  it("occurred_at 9999-12-31 goes to the DLQ and does not stop a later sequence from unlocking", () => {
    const msgs = messages([
      body(1, "profile.completed", "9999-12-31T23:59:59Z"),
      body(2, "profile.completed", "2026-11-30T10:00:00Z"),
      body(3, "tutorial.finished", "2026-11-30T10:01:00Z"),
      body(4, "first_project.created", "2026-11-30T10:02:00Z"),
    ]);
    const engine = agree(msgs, book);
    expect(engine.rejected).toBe(1);
    expect(keys(engine.unlocks)).toEqual(["u1/onboarded@2026-11-30T10:02:00.000Z"]);
  });

  it("a rule with id constructor unlocks and shows in progress", () => {
    const b = RuleBook.fromRules([rule({ id: "constructor", type: "count", event: "lesson.completed", target: 2 }), rule({ id: "after", type: "composite", of: ["constructor"] })]);
    const first = agree(messages([body(1, "lesson.completed", "2026-11-30T10:00:00Z")]), b);
    expect(progressByUser(first.states, b, STORED)["t.u1"]!.map((p) => [p.achievement_id, p.current])).toEqual([
      ["constructor", 1],
      ["after", 0],
    ]);
    const both = agree(messages([body(1, "lesson.completed", "2026-11-30T10:00:00Z"), body(2, "lesson.completed", "2026-11-30T10:01:00Z")]), b);
    expect(keys(both.unlocks).map((k) => k.split("@")[0])).toEqual(["u1/constructor", "u1/after"]);
  });
});

/** Lower-case names that objects inherit (the ones a rule id can spell), and random valid ids. */
const PROTO_IDS = ["constructor", "tostring", "valueof", "hasownproperty", "isprototypeof", "propertyisenumerable", "tolocalestring", "prototype", "length", "name"];
const ruleId = fc.oneof(fc.constantFrom(...PROTO_IDS), fc.stringMatching(RULE_ID));

describe("any valid rule id works", () => {
  it("unlocks, cascades, survives JSON and shows in progress, for prototype names too", () => {
    fc.assert(
      fc.property(ruleId, fc.option(ruleId), (id, tier) => {
        const other = id === "zz-after" ? "zz-after2" : "zz-after";
        const tierName = tier === null ? null : tier.slice(0, 32);
        const rules = [
          rule({ id, type: "count", event: "a.b", ...(tierName === null ? { target: 1 } : { tiers: [{ name: tierName, target: 1 }] }) }),
          rule({ id: other, type: "count", event: "a.b", target: 1, prerequisites: [tierName === null ? id : `${id}:${tierName}`] }),
        ];
        const book = RuleBook.fromRules(rules);
        const set = book.forTenant("t").at(STORED);
        expect(progressOf(emptyEvalState(), set, STORED).map((p) => p.achievement_id)).toEqual([id, other]);
        const ev = validateEvent(JSON.parse(body(1, "a.b", "2026-11-30T10:00:00Z")));
        if (!ev.ok) throw new Error(ev.rejection.message);
        const r = evaluate(emptyEvalState(), ev.value, book.forTenant("t"));
        expect(r.unlocks.map((u) => [u.achievement_id, u.tier])).toEqual([
          [id, tierName],
          [other, null],
        ]);
        const back = decodeState(encodeState({ ...emptyUserState(), eval: r.state })).eval;
        expect(back).toEqual(r.state);
        expect(progressOf(back, set, STORED)).toEqual([]);
        // The same through the three paths, a second event changing nothing.
        const paths = agree(messages([body(1, "a.b", "2026-11-30T10:00:00Z"), body(2, "a.b", "2026-11-30T10:01:00Z")]), book);
        expect(paths.unlocks).toHaveLength(2);
      }),
      { numRuns: 200 },
    );
  });
});

// ---------------------------------------------------------------- engine, replay and simulate agree on hostile inputs

const AMOUNTS = ["150", "-150", "0.1", "12.345678", "-1e308", "1e308", "1e400", "-1e400", "1e15", "-1e15", "1000000000000001", "9007199254740993", "5e-324", '"150"', "null", "[]", "{}"];
const amount = fc.oneof(fc.constantFrom(...AMOUNTS), fc.integer({ min: -2000, max: 2000 }).map(String), fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => JSON.stringify(x)));
const when = fc.oneof(
  fc.integer({ min: -40 * DAY, max: 3 * DAY }).map((off) => new Date(STORED + off).toISOString()),
  fc.constantFrom("9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2026-12-01T12:00:00Z", "2026-12-01T12:00:01+00:00", "0001-01-01T00:00:00Z"),
);
const hostileEvent = fc.record({
  type: fc.constantFrom("purchase.placed", "lesson.completed", "profile.completed", "tutorial.finished", "first_project.created"),
  user: fc.constantFrom("u1", "u2"),
  at: when,
  amount,
  score: amount,
  sku: fc.integer({ min: 0, max: 4 }),
  reuseId: fc.integer({ min: 0, max: 9 }),
});

const HOSTILE_BOOK = RuleBook.fromRules([
  rule(SPENDER),
  rule(ONBOARDED),
  rule({ id: "big", type: "threshold", event: "purchase.placed", field: "payload.amount", aggregate: "max", target: 500 }),
  rule({ id: "skus", type: "threshold", event: "purchase.placed", field: "payload.sku", aggregate: "distinct", target: 3 }),
  rule({ id: "pricey", type: "count", event: "purchase.placed", where: { "payload.amount": { gte: 100 } }, target: 2 }),
  rule({ id: "constructor", type: "count", event: "lesson.completed", where: { "attributes.score": { gt: 10 } }, segment: { plan: "pro" }, target: 2 }),
  rule({ id: "combo", type: "composite", of: ["constructor", "spender:bronze", { event: "purchase.placed", where: { "payload.amount": { lt: 0 } } }], require: 2 }),
]);

describe("the workers' path, replay's Shard and simulate agree", () => {
  it("on generated events with hostile numbers, times and repeated ids", () => {
    fc.assert(
      fc.property(fc.array(hostileEvent, { minLength: 1, maxLength: 25 }), (evs) => {
        const bodies = evs.map((e, i) => {
          // One event in ten reuses an earlier id: a producer's retry.
          const id = e.reuseId === 0 && i > 0 ? i - 1 : i;
          return body(id, e.type, e.at, `{"amount":${e.amount},"sku":"s${e.sku}"}`, e.user, `{"plan":"pro","score":${e.score}}`);
        });
        agree(messages(bodies, STORED - 20 * DAY), HOSTILE_BOOK);
      }),
      { numRuns: 300 },
    );
  });
});

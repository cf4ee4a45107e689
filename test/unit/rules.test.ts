import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateEvent, type ValidEvent } from "../../src/events/mod.ts";
import { applyEvents, chunksCovering, emptyUserState, type SeqEvent, type UserState } from "../../src/core/mod.ts";
import {
  compileCondition,
  compileRuleSet,
  ConditionError,
  emptyEvalState,
  evaluate,
  loadRules,
  progressOf,
  RuleBook,
  RuleSchema,
  RulesError,
  TRIGGER_LIMIT,
  unlockId,
  type EvalState,
  type Rule,
  type RuleSource,
} from "../../src/rules/mod.ts";
import type { CountState } from "../../src/rules/kinds/count.ts";

// ---------------------------------------------------------------- helpers

type EvOpts = {
  payload?: Record<string, unknown>;
  attributes?: Record<string, unknown>;
  source?: string;
  at?: string;
  tenant?: string;
  user?: string;
};

function ev(id: string, type: string, o: EvOpts = {}): ValidEvent {
  const r = validateEvent({
    event_id: id,
    event_type: type,
    tenant_id: o.tenant ?? "acme",
    user_id: o.user ?? "u1",
    occurred_at: o.at ?? "2026-04-13T10:00:00Z",
    ...(o.payload ? { payload: o.payload } : {}),
    ...(o.attributes ? { attributes: o.attributes } : {}),
    ...(o.source ? { source: o.source } : {}),
  });
  if (!r.ok) throw new Error(`bad test event: ${r.rejection.message}`);
  return r.value;
}

function rule(r: Record<string, unknown>): Rule {
  return RuleSchema.parse({ version: 1, type: "count", ...r });
}

/** Any time: the rule sets below have a single version per rule. */
const ANY_TIME = Date.parse("2026-04-13T10:00:00Z");

/** The count of a (window-less) count rule's state, or undefined when it has none. */
function countOf(s: EvalState, id: string): number | undefined {
  const st = s.rules[id] as CountState | undefined;
  if (st !== undefined) expect(st.k).toBe("count");
  return st?.n;
}

/** A getter over a flat map of paths, as the predicate expects. */
function getter(values: Record<string, unknown>): (path: string) => unknown {
  return (p) => values[p];
}

function matches(cond: unknown, values: Record<string, unknown>): boolean {
  return compileCondition(cond)(getter(values));
}

function conditionError(cond: unknown, at?: string): ConditionError {
  try {
    if (at === undefined) compileCondition(cond);
    else compileCondition(cond, at);
  } catch (err) {
    expect(err).toBeInstanceOf(ConditionError);
    return err as ConditionError;
  }
  throw new Error(`expected ${JSON.stringify(cond)} not to compile`);
}

/** Applies events in order through evaluate, returning the final state and all unlocks. */
function run(state: EvalState, events: ValidEvent[], rules: Rule[]) {
  const set = compileRuleSet(rules);
  let s = state;
  const unlocks = [];
  for (const e of events) {
    const r = evaluate(s, e, set);
    s = r.state;
    unlocks.push(...r.unlocks);
  }
  return { state: s, unlocks };
}

// ---------------------------------------------------------------- conditions

describe("compileCondition", () => {
  it("treats a literal as equality (strict, no coercion)", () => {
    const c = { "payload.course_id": "c2" };
    expect(matches(c, { "payload.course_id": "c2" })).toBe(true);
    expect(matches(c, { "payload.course_id": "c3" })).toBe(false);
    expect(matches(c, {})).toBe(false);
    expect(matches({ "payload.n": 1 }, { "payload.n": "1" })).toBe(false);
    expect(matches({ "payload.ok": true }, { "payload.ok": true })).toBe(true);
    expect(matches({ "payload.ok": true }, { "payload.ok": 1 })).toBe(false);
    expect(matches({ "payload.x": null }, { "payload.x": null })).toBe(true);
    expect(matches({ "payload.x": null }, {})).toBe(false);
  });

  it("passes the field path to the getter", () => {
    const asked: string[] = [];
    compileCondition({ "attributes.plan": "pro", source: "web" })((p) => {
      asked.push(p);
      return p === "attributes.plan" ? "pro" : "web";
    });
    expect(asked.sort()).toEqual(["attributes.plan", "source"]);
  });

  it("supports eq and ne", () => {
    expect(matches({ source: { eq: "web" } }, { source: "web" })).toBe(true);
    expect(matches({ source: { eq: "web" } }, { source: "app" })).toBe(false);
    expect(matches({ source: { ne: "web" } }, { source: "app" })).toBe(true);
    expect(matches({ source: { ne: "web" } }, { source: "web" })).toBe(false);
    expect(matches({ source: { ne: "web" } }, {})).toBe(true);
  });

  it("orders numbers with gt gte lt lte", () => {
    const at = (op: string, limit: number, v: unknown) => matches({ "payload.n": { [op]: limit } }, { "payload.n": v });
    expect([at("gt", 60, 59), at("gt", 60, 60), at("gt", 60, 61)]).toEqual([false, false, true]);
    expect([at("gte", 60, 59), at("gte", 60, 60), at("gte", 60, 61)]).toEqual([false, true, true]);
    expect([at("lt", 60, 59), at("lt", 60, 60), at("lt", 60, 61)]).toEqual([true, false, false]);
    expect([at("lte", 60, 59), at("lte", 60, 60), at("lte", 60, 61)]).toEqual([true, true, false]);
  });

  it("orders strings lexicographically", () => {
    expect(matches({ "payload.d": { gte: "2026-01-01" } }, { "payload.d": "2026-04-13" })).toBe(true);
    expect(matches({ "payload.d": { lt: "2026-01-01" } }, { "payload.d": "2026-04-13" })).toBe(false);
  });

  it("compares only same-typed numbers or strings when ordering", () => {
    for (const op of ["gt", "gte", "lt", "lte"]) {
      expect(matches({ "payload.n": { [op]: 5 } }, { "payload.n": "10" })).toBe(false);
      expect(matches({ "payload.n": { [op]: 5 } }, { "payload.n": "1" })).toBe(false);
      expect(matches({ "payload.n": { [op]: "5" } }, { "payload.n": 5 })).toBe(false);
      expect(matches({ "payload.n": { [op]: 0 } }, { "payload.n": null })).toBe(false);
      expect(matches({ "payload.n": { [op]: 0 } }, { "payload.n": false })).toBe(false);
      expect(matches({ "payload.n": { [op]: 0 } }, {})).toBe(false);
    }
  });

  it("supports in and nin", () => {
    const c = { "attributes.plan": { in: ["pro", "team"] } };
    expect(matches(c, { "attributes.plan": "pro" })).toBe(true);
    expect(matches(c, { "attributes.plan": "free" })).toBe(false);
    expect(matches(c, {})).toBe(false);
    const n = { "attributes.plan": { nin: ["pro", "team"] } };
    expect(matches(n, { "attributes.plan": "free" })).toBe(true);
    expect(matches(n, { "attributes.plan": "team" })).toBe(false);
    expect(matches({ "payload.n": { in: [1, 2] } }, { "payload.n": "1" })).toBe(false);
  });

  it("supports exists", () => {
    expect(matches({ business_key: { exists: true } }, { business_key: "k" })).toBe(true);
    expect(matches({ business_key: { exists: true } }, {})).toBe(false);
    expect(matches({ business_key: { exists: false } }, {})).toBe(true);
    expect(matches({ business_key: { exists: false } }, { business_key: "k" })).toBe(false);
    expect(matches({ "payload.x": { exists: true } }, { "payload.x": null })).toBe(true);
  });

  it("requires every operator of one field and every key of one object (AND)", () => {
    const range = { "payload.n": { gte: 10, lt: 20 } };
    expect(matches(range, { "payload.n": 9 })).toBe(false);
    expect(matches(range, { "payload.n": 10 })).toBe(true);
    expect(matches(range, { "payload.n": 20 })).toBe(false);
    const two = { source: "web", event_type: "lesson.completed" };
    expect(matches(two, { source: "web", event_type: "lesson.completed" })).toBe(true);
    expect(matches(two, { source: "web", event_type: "lesson.started" })).toBe(false);
    expect(matches(two, { source: "app", event_type: "lesson.completed" })).toBe(false);
  });

  it("supports all, any and not", () => {
    const any = { any: [{ source: "web" }, { "attributes.plan": { in: ["pro", "team"] } }] };
    expect(matches(any, { source: "web", "attributes.plan": "free" })).toBe(true);
    expect(matches(any, { source: "app", "attributes.plan": "team" })).toBe(true);
    expect(matches(any, { source: "app", "attributes.plan": "free" })).toBe(false);

    const all = { all: [{ source: "web" }, { "payload.n": { gt: 1 } }] };
    expect(matches(all, { source: "web", "payload.n": 2 })).toBe(true);
    expect(matches(all, { source: "web", "payload.n": 1 })).toBe(false);

    const not = { not: { source: "web" } };
    expect(matches(not, { source: "web" })).toBe(false);
    expect(matches(not, { source: "app" })).toBe(true);

    const nested = { not: { any: [{ source: "web" }, { all: [{ "payload.a": 1 }, { "payload.b": 2 }] }] }, "payload.c": { exists: true } };
    expect(matches(nested, { source: "app", "payload.a": 1, "payload.b": 3, "payload.c": 0 })).toBe(true);
    expect(matches(nested, { source: "app", "payload.a": 1, "payload.b": 2, "payload.c": 0 })).toBe(false);
    expect(matches(nested, { source: "app", "payload.c": 0 })).toBe(true);
    expect(matches(nested, { source: "app" })).toBe(false);
  });

  it("accepts every documented root", () => {
    for (const root of ["payload.x", "attributes.x", "source", "event_type", "business_key"]) {
      expect(() => compileCondition({ [root]: "v" })).not.toThrow();
    }
  });

  it("rejects an unknown operator with its path", () => {
    const e = conditionError({ "payload.x": { foo: 1 } });
    expect(e.path).toBe("where.payload.x.foo");
    expect(e.message).toContain("foo");
    expect(e.name).toBe("ConditionError");
    expect(e).toBeInstanceOf(Error);
  });

  it("rejects an unknown root field", () => {
    const e = conditionError({ "user.plan": "pro" });
    expect(e.path).toBe("where.user.plan");
    expect(e.message).toContain("user.plan");
    expect(conditionError({ tenant_id: "acme" }).path).toBe("where.tenant_id");
    expect(conditionError({ payloadx: 1 }).path).toBe("where.payloadx");
  });

  it("names paths inside combinators", () => {
    expect(conditionError({ any: [{ source: "web" }, { "payload.x": { bogus: 1 } }] }).path).toBe("where.any.1.payload.x.bogus");
    expect(conditionError({ all: [{ "nope.x": 1 }] }).path).toBe("where.all.0.nope.x");
    expect(conditionError({ not: { "payload.x": { gt: true } } }).path).toBe("where.not.payload.x.gt");
  });

  it("uses the given base path", () => {
    expect(conditionError({ "payload.x": { foo: 1 } }, "rules.0.where").path).toBe("rules.0.where.payload.x.foo");
  });

  it("checks operator arguments", () => {
    expect(conditionError({ "payload.x": { in: "pro" } }).path).toBe("where.payload.x.in");
    expect(conditionError({ "payload.x": { nin: [{ a: 1 }] } }).path).toBe("where.payload.x.nin");
    expect(conditionError({ "payload.x": { exists: "yes" } }).path).toBe("where.payload.x.exists");
    expect(conditionError({ "payload.x": { gt: true } }).path).toBe("where.payload.x.gt");
    expect(conditionError({ "payload.x": { lte: null } }).path).toBe("where.payload.x.lte");
    expect(conditionError({ "payload.x": { eq: [1] } }).path).toBe("where.payload.x.eq");
    expect(conditionError({ "payload.x": { ne: { a: 1 } } }).path).toBe("where.payload.x.ne");
  });

  it("rejects malformed conditions", () => {
    expect(conditionError({}).path).toBe("where");
    expect(conditionError(null).path).toBe("where");
    expect(conditionError([{ source: "web" }]).path).toBe("where");
    expect(conditionError("source == web").path).toBe("where");
    expect(conditionError({ "payload.x": {} }).path).toBe("where.payload.x");
    expect(conditionError({ "payload.x": [1, 2] }).path).toBe("where.payload.x");
    expect(conditionError({ any: [] }).path).toBe("where.any");
    expect(conditionError({ all: { source: "web" } }).path).toBe("where.all");
    expect(conditionError({ not: "web" }).path).toBe("where.not");
  });
});

// ---------------------------------------------------------------- evaluate

describe("evaluate", () => {
  const T = "2026-04-13T10:00:00Z";

  it("unlocks when the count reaches the target", () => {
    const rules = [rule({ id: "three", version: 4, event: "lesson.completed", target: 3, title: "Three", reward: { points: 10 } })];
    const set = compileRuleSet(rules);
    let s = emptyEvalState();
    const times = ["2026-04-13T10:00:00Z", "2026-04-13T11:00:00Z", "2026-04-13T12:30:15.500Z"];
    for (let i = 0; i < 2; i++) {
      const r = evaluate(s, ev(`e${i + 1}`, "lesson.completed", { at: times[i] }), set);
      expect(r.changed).toBe(true);
      expect(r.unlocks).toEqual([]);
      s = r.state;
    }
    expect(countOf(s, "three")).toBe(2);
    const r = evaluate(s, ev("e3", "lesson.completed", { at: times[2] }), set);
    expect(r.changed).toBe(true);
    expect(r.unlocks).toHaveLength(1);
    const u = r.unlocks[0]!;
    expect(u).toEqual({
      unlock_id: unlockId("acme", "u1", "three", null, 1),
      rule_id: "three",
      rule_version: 4,
      tier: null,
      occurrence: 1,
      unlocked_at: "2026-04-13T12:30:15.500Z",
      trigger_event_ids: ["e1", "e2", "e3"],
      tenant_id: "acme",
      user_id: "u1",
      achievement_id: "three",
      title: "Three",
      reward: { points: 10 },
    });
    expect(u.unlock_id).toMatch(/^ul_[0-9a-f]{32}$/);
    expect(r.state.unlocked.three).toMatchObject({ unlock_id: u.unlock_id, rule_version: 4, unlocked_at: u.unlocked_at });
    expect(countOf(r.state, "three")).toBe(3);
  });

  it("omits title and reward when the rule has none", () => {
    const r = evaluate(emptyEvalState(), ev("e1", "a.b"), compileRuleSet([rule({ id: "one", event: "a.b", target: 1 })]));
    expect(r.unlocks).toHaveLength(1);
    expect(r.unlocks[0]).not.toHaveProperty("title");
    expect(r.unlocks[0]).not.toHaveProperty("reward");
  });

  it("computes unlock ids deterministically from tenant, user and achievement", () => {
    const id = unlockId("acme", "u1", "three", null, 1);
    expect(unlockId("acme", "u1", "three", null, 1)).toBe(id);
    expect(id).toMatch(/^ul_[0-9a-f]{32}$/);
    const others = [
      unlockId("acme", "u2", "three", null, 1),
      unlockId("other", "u1", "three", null, 1),
      unlockId("acme", "u1", "four", null, 1),
      unlockId("acme", "u1", "three", "gold", 1),
      unlockId("acme", "u1", "three", null, 2),
      unlockId("acmeu", "1", "three", null, 1),
    ];
    expect(new Set([id, ...others]).size).toBe(others.length + 1);

    const rules = [rule({ id: "one", event: "a.b", target: 1 })];
    const a = run(emptyEvalState(), [ev("x1", "a.b", { user: "u1" })], rules).unlocks[0]!;
    const b = run(emptyEvalState(), [ev("x2", "a.b", { user: "u1", at: "2030-01-01T00:00:00Z" })], rules).unlocks[0]!;
    const c = run(emptyEvalState(), [ev("x1", "a.b", { user: "u2" })], rules).unlocks[0]!;
    expect(a.unlock_id).toBe(b.unlock_id);
    expect(a.unlock_id).not.toBe(c.unlock_id);
  });

  it("keeps only the min(target, TRIGGER_LIMIT) most recent trigger ids", () => {
    expect(TRIGGER_LIMIT).toBe(16);
    const big = run(
      emptyEvalState(),
      Array.from({ length: 20 }, (_, i) => ev(`e${i + 1}`, "a.b")),
      [rule({ id: "twenty", event: "a.b", target: 20 })],
    );
    expect(big.unlocks).toHaveLength(1);
    expect(big.unlocks[0]!.trigger_event_ids).toEqual(Array.from({ length: 16 }, (_, i) => `e${i + 5}`));

    // progress before the unlock is bounded by the target too
    const small = run(emptyEvalState(), [ev("a", "a.b"), ev("b", "a.b"), ev("c", "a.b")], [rule({ id: "five", event: "a.b", target: 2 })]);
    expect(small.unlocks[0]!.trigger_event_ids).toEqual(["a", "b"]);
    const partial = run(emptyEvalState(), ["a", "b", "c", "d"].map((id) => ev(id, "a.b")), [rule({ id: "ten", event: "a.b", target: 3, where: { "payload.k": 1 } }), rule({ id: "many", event: "a.b", target: 100 })]);
    expect(partial.state.rules.many).toMatchObject({ k: "count", n: 4, ids: ["a", "b", "c", "d"] });
  });

  it("only counts qualifying events (filter)", () => {
    const rules = [rule({ id: "long", event: "lesson.completed", where: { "payload.duration_seconds": { gte: 600 } }, target: 2 })];
    const { state, unlocks } = run(
      emptyEvalState(),
      [
        ev("e1", "lesson.completed", { payload: { duration_seconds: 700 } }),
        ev("e2", "lesson.completed", { payload: { duration_seconds: 30 } }),
        ev("e3", "lesson.completed", { payload: {} }),
        ev("e4", "lesson.completed", { payload: { duration_seconds: 600 } }),
      ],
      rules,
    );
    expect(unlocks.map((u) => u.trigger_event_ids)).toEqual([["e1", "e4"]]);
    expect(countOf(state, "long")).toBe(2);
  });

  it("looks up nested payload, attributes and source fields of the event", () => {
    const rules = [
      rule({ id: "nested", event: "a.b", where: { "payload.course.level": { gt: 2 } }, target: 1 }),
      rule({ id: "attrs", event: "a.b", where: { any: [{ source: "web" }, { "attributes.plan": { in: ["pro"] } }] }, target: 1 }),
      rule({ id: "bytype", event: "a.b", where: { event_type: "a.b" }, target: 1 }),
    ];
    const set = compileRuleSet(rules);
    const none = evaluate(emptyEvalState(), ev("e1", "a.b", { payload: { course: { level: 1 } }, source: "app", attributes: { plan: "free" } }), set);
    expect(none.unlocks.map((u) => u.achievement_id)).toEqual(["bytype"]);
    const all = evaluate(emptyEvalState(), ev("e2", "a.b", { payload: { course: { level: 3 } }, attributes: { plan: "pro" } }), set);
    expect(all.unlocks.map((u) => u.achievement_id).sort()).toEqual(["attrs", "bytype", "nested"]);
    // a scalar where an object is expected yields undefined, not an error
    const scalar = evaluate(emptyEvalState(), ev("e3", "a.b", { payload: { course: "x" }, source: "web" }), set);
    expect(scalar.unlocks.map((u) => u.achievement_id).sort()).toEqual(["attrs", "bytype"]);
  });

  it("leaves the state untouched for non-matching events", () => {
    const rules = [rule({ id: "long", event: "lesson.completed", where: { "payload.n": { gt: 5 } }, target: 2 })];
    const set = compileRuleSet(rules);
    const start = evaluate(emptyEvalState(), ev("e0", "lesson.completed", { payload: { n: 9 } }), set).state;
    const filtered = evaluate(start, ev("e1", "lesson.completed", { payload: { n: 1 } }), set);
    expect(filtered.changed).toBe(false);
    expect(filtered.state).toBe(start);
    expect(filtered.unlocks).toEqual([]);
    const other = evaluate(start, ev("e2", "lesson.started", { payload: { n: 9 } }), set);
    expect(other.changed).toBe(false);
    expect(other.state).toBe(start);
  });

  it("stops changing a rule after its unlock", () => {
    const set = compileRuleSet([rule({ id: "two", event: "a.b", target: 2 })]);
    const { state } = run(emptyEvalState(), [ev("e1", "a.b"), ev("e2", "a.b")], [rule({ id: "two", event: "a.b", target: 2 })]);
    expect(state.unlocked.two).toBeDefined();
    const again = evaluate(state, ev("e3", "a.b"), set);
    expect(again.changed).toBe(false);
    expect(again.state).toBe(state);
    expect(again.unlocks).toEqual([]);
    expect(countOf(again.state, "two")).toBe(2);
  });

  it("does not mutate the input state and shares unchanged parts", () => {
    const rules = [rule({ id: "two", event: "a.b", target: 2 }), rule({ id: "other", event: "c.d", target: 5 })];
    const set = compileRuleSet(rules);
    const s1 = run(emptyEvalState(), [ev("c1", "c.d"), ev("e1", "a.b")], rules).state;
    const snapshot = structuredClone(s1);
    const r = evaluate(s1, ev("e2", "a.b"), set);
    expect(r.unlocks).toHaveLength(1);
    expect(s1).toEqual(snapshot);
    expect(s1.unlocked).toEqual({});
    expect(r.state).not.toBe(s1);
    expect(r.state.rules.other).toBe(s1.rules.other);

    const s2 = run(emptyEvalState(), [ev("e1", "a.b")], rules).state;
    const r2 = evaluate(s2, ev("c1", "c.d"), set);
    expect(r2.changed).toBe(true);
    expect(r2.state.unlocked).toBe(s2.unlocked); // no unlock: the unlocked map is shared
    expect(s2.rules.other).toBeUndefined();
  });

  it("counts every event type listed in `event`", () => {
    const rules = [rule({ id: "shopper", event: ["purchase.placed", "purchase.renewed"], target: 3 })];
    const { state, unlocks } = run(
      emptyEvalState(),
      [ev("p1", "purchase.placed"), ev("r1", "purchase.renewed"), ev("x1", "purchase.refunded"), ev("p2", "purchase.placed")],
      rules,
    );
    expect(unlocks).toHaveLength(1);
    expect(unlocks[0]!.trigger_event_ids).toEqual(["p1", "r1", "p2"]);
    expect(countOf(state, "shopper")).toBe(3);
  });

  it("evaluates several rules on one event independently", () => {
    const rules = [
      rule({ id: "first", event: "lesson.completed", target: 1 }),
      rule({ id: "five", event: "lesson.completed", target: 5 }),
      rule({ id: "elsewhere", event: "other.thing", target: 1 }),
    ];
    const r = evaluate(emptyEvalState(), ev("e1", "lesson.completed", { at: T }), compileRuleSet(rules));
    expect(r.unlocks.map((u) => u.achievement_id)).toEqual(["first"]);
    expect(r.state.rules).toEqual({ first: { k: "count", n: 1, ids: ["e1"], t: Date.parse(T) }, five: { k: "count", n: 1, ids: ["e1"], t: Date.parse(T) } });
    expect(Object.keys(r.state.unlocked)).toEqual(["first"]);
  });
});

// ---------------------------------------------------------------- progress

describe("progressOf", () => {
  const rules = [
    rule({ id: "first", event: "a.b", target: 1, title: "First" }),
    rule({ id: "five", version: 3, event: "a.b", target: 5 }),
    rule({ id: "secret", event: "a.b", target: 10, hidden: true }),
    rule({ id: "never", event: "c.d", target: 2 }),
  ];
  const set = compileRuleSet(rules);

  it("reports progress of rules not yet unlocked, omitting hidden ones", () => {
    const { state } = run(emptyEvalState(), [ev("e1", "a.b"), ev("e2", "a.b")], rules);
    expect(progressOf(state, set, ANY_TIME)).toEqual([
      { achievement_id: "five", tier: null, rule_id: "five", rule_version: 3, type: "count", current: 2, target: 5 },
      { achievement_id: "never", tier: null, rule_id: "never", rule_version: 1, type: "count", current: 0, target: 2 },
    ]);
  });

  it("includes the title and starts at zero", () => {
    expect(progressOf(emptyEvalState(), set, ANY_TIME)).toEqual([
      { achievement_id: "first", tier: null, rule_id: "first", rule_version: 1, type: "count", title: "First", current: 0, target: 1 },
      { achievement_id: "five", tier: null, rule_id: "five", rule_version: 3, type: "count", current: 0, target: 5 },
      { achievement_id: "never", tier: null, rule_id: "never", rule_version: 1, type: "count", current: 0, target: 2 },
    ]);
  });

  it("caps current at the target", () => {
    const state: EvalState = { rules: { five: { k: "count", n: 12, ids: [], t: 0 } as CountState }, unlocked: {} };
    expect(progressOf(state, set, ANY_TIME).find((p) => p.rule_id === "five")?.current).toBe(5);
  });
});

// ---------------------------------------------------------------- rule book

describe("RuleBook", () => {
  const defaults = [
    rule({ id: "shared", event: "a.b", target: 1 }),
    rule({ id: "five", version: 1, event: "a.b", target: 5 }),
  ];
  const tenants = new Map([["acme", [rule({ id: "five", version: 3, event: "a.b", target: 7 }), rule({ id: "own", event: "c.d", target: 2 })]]]);
  const book = RuleBook.fromRules(defaults, tenants);

  it("lets a tenant rule replace the default with the same id and keeps the other defaults", () => {
    const acme = book.forTenant("acme").at(ANY_TIME);
    expect(acme.rules.map((c) => c.rule.id).sort()).toEqual(["five", "own", "shared"]);
    expect(acme.byId.get("five")?.rule).toMatchObject({ version: 3, target: 7 });
    expect(acme.byEventType.get("a.b")?.map((c) => c.rule.id).sort()).toEqual(["five", "shared"]);
    expect(acme.byEventType.get("c.d")?.map((c) => c.rule.id)).toEqual(["own"]);
  });

  it("gives other tenants the defaults only", () => {
    const other = book.forTenant("globex").at(ANY_TIME);
    expect(other.rules.map((c) => c.rule.id).sort()).toEqual(["five", "shared"]);
    expect(other.byId.get("five")?.rule.version).toBe(1);
    expect(other.byEventType.has("c.d")).toBe(false);
  });

  it("caches each tenant's set and lists every rule", () => {
    expect(book.forTenant("acme")).toBe(book.forTenant("acme"));
    expect(book.forTenant("acme").at(ANY_TIME)).toBe(book.forTenant("acme").at(ANY_TIME));
    expect(book.all().map((r) => `${r.tenant}/${r.version.rule.id}@${r.version.version}`).sort()).toEqual([
      "*/five@1",
      "*/shared@1",
      "acme/five@3",
      "acme/own@1",
    ]);
  });
});

// ---------------------------------------------------------------- rule schema

describe("RuleSchema", () => {
  it("normalises event to an array and defaults hidden to false", () => {
    const r = rule({ id: "x", event: "a.b", target: 1 });
    if (r.type !== "count") throw new Error(`expected a count rule, got ${r.type}`);
    expect(r.event).toEqual(["a.b"]);
    expect(r.hidden).toBe(false);
  });

  it("rejects bad ids, versions, targets, event types and unknown fields", () => {
    const bad = [
      { id: "Upper", event: "a.b", target: 1 },
      { id: "x", version: 0, event: "a.b", target: 1 },
      { id: "x", event: "a..b", target: 1 },
      { id: "x", event: [], target: 1 },
      { id: "x", event: "a.b", target: 1, extra: true },
      { id: "x", event: "a.b", target: 1, where: { "payload.x": { foo: 1 } } },
    ];
    for (const b of bad) expect(RuleSchema.safeParse({ version: 1, type: "count", ...b }).success).toBe(false);
  });
});

// ---------------------------------------------------------------- files

describe("loadRules", () => {
  let dir: string;
  let n = 0;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "achd-rules-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh folder holding the given files. */
  function folder(files: Record<string, string>): string {
    const d = join(dir, `case${n++}`);
    mkdirSync(d);
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(d, name, ".."), { recursive: true });
      writeFileSync(join(d, name), text);
    }
    return d;
  }

  function problemsOf(path: string) {
    try {
      loadRules(path);
    } catch (err) {
      expect(err).toBeInstanceOf(RulesError);
      return (err as RulesError).problems;
    }
    throw new Error("expected loadRules to throw");
  }

  const VALID = `
rules:
  - id: first-lesson
    version: 1
    type: count
    title: First steps
    event: lesson.completed
    target: 1
  - id: shopper
    version: 2
    type: count
    event: [purchase.placed, purchase.renewed]
    where: { any: [ { source: web }, { "attributes.plan": { in: [pro, team] } } ] }
    target: 3
    hidden: true
`;

  it("loads a valid file", () => {
    const d = folder({ "rules.yaml": VALID });
    const book = loadRules(join(d, "rules.yaml"));
    const set = book.forTenant("anyone").at(ANY_TIME);
    expect(set.rules.map((c) => c.rule.id)).toEqual(["first-lesson", "shopper"]);
    expect(set.byId.get("shopper")?.rule).toMatchObject({ version: 2, target: 3, hidden: true, event: ["purchase.placed", "purchase.renewed"] });
    // the compiled filter works
    const web = set.byId.get("shopper")!.where((p) => (p === "source" ? "web" : undefined));
    const app = set.byId.get("shopper")!.where((p) => (p === "source" ? "app" : undefined));
    expect([web, app]).toEqual([true, false]);
  });

  it("loads a folder recursively with default and tenant files, yaml/yml/json and bare arrays", () => {
    const d = folder({
      "default.yaml": VALID,
      "tenants/acme.yml": `tenant: acme\nrules:\n  - { id: first-lesson, version: 5, type: count, event: lesson.completed, target: 2 }\n`,
      "tenants/globex.json": JSON.stringify({ tenant: "globex", rules: [{ id: "g", version: 1, type: "count", event: "x.y", target: 1 }] }),
      "more/array.yaml": `- { id: bare, version: 1, type: count, event: a.b, target: 1 }\n`,
      "README.md": "not a rules file: [",
    });
    const book = loadRules(d);
    const at = (tenant: string) => book.forTenant(tenant).at(ANY_TIME);
    expect(at("acme").byId.get("first-lesson")?.rule.version).toBe(5);
    expect(at("acme").byId.has("shopper")).toBe(true);
    expect(at("globex").byId.has("g")).toBe(true);
    expect(at("globex").byId.get("first-lesson")?.rule.version).toBe(1);
    expect(at("initech").byId.has("bare")).toBe(true);
    expect(book.all()).toHaveLength(5);
  });

  it("names the rule and the field of a bad target", () => {
    const d = folder({ "r.yaml": `rules:\n  - { id: x, version: 1, type: count, event: a.b, target: 0 }\n` });
    const file = join(d, "r.yaml");
    const problems = problemsOf(file);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ file, rule: "x", path: "target" });
    expect(problems[0]!.reason.length).toBeGreaterThan(0);
  });

  it("names the path of a bad where operator", () => {
    const d = folder({ "r.yaml": `rules:\n  - { id: y, version: 1, type: count, event: a.b, target: 1, where: { payload.x: { foo: 1 } } }\n` });
    const problems = problemsOf(d);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ rule: "y", path: "where.payload.x.foo" });
    expect(problems[0]!.reason).toContain("foo");
  });

  it("reports unknown fields", () => {
    const d = folder({ "r.yaml": `rules:\n  - { id: z, version: 1, type: count, event: a.b, target: 1, colour: red }\n` });
    const problems = problemsOf(d);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.rule).toBe("z");
    expect(problems[0]!.reason).toContain("colour");

    const top = folder({ "r.yaml": `tenant: acme\nextra: 1\nrules: []\n` });
    const p2 = problemsOf(top);
    expect(p2).toHaveLength(1);
    expect(p2[0]!.rule).toBeUndefined();
    expect(p2[0]!.reason).toContain("extra");
  });

  it("reports duplicate ids within a tenant (same version, or unnumbered)", () => {
    // Listed twice without versions: a duplicate id.
    const unnumbered = folder({
      "r.yaml": `tenant: acme\nrules:\n  - { id: x, type: count, event: a.b, target: 1 }\n  - { id: x, type: count, event: a.b, target: 2 }\n`,
    });
    const p1 = problemsOf(unnumbered);
    expect(p1).toHaveLength(1);
    expect(p1[0]).toMatchObject({ rule: "x", path: "id" });
    expect(p1[0]!.reason).toMatch(/duplicate/i);

    // The same version twice: a duplicate version.
    const same = folder({
      "r.yaml": `tenant: acme\nrules:\n  - { id: x, version: 1, type: count, event: a.b, target: 1 }\n  - { id: x, version: 1, type: count, event: a.b, target: 2 }\n`,
    });
    const p2 = problemsOf(same);
    expect(p2).toHaveLength(1);
    expect(p2[0]).toMatchObject({ rule: "x", path: "version" });
    expect(p2[0]!.reason).toMatch(/duplicate/i);

    // A numbered and an unnumbered listing of one id: every version must be numbered.
    const mixed = folder({
      "r.yaml": `tenant: acme\nrules:\n  - { id: x, version: 1, type: count, event: a.b, target: 1 }\n  - { id: x, type: count, event: a.b, target: 2 }\n`,
    });
    const p3 = problemsOf(mixed);
    expect(p3).toHaveLength(1);
    expect(p3[0]).toMatchObject({ rule: "x", path: "version" });

    // Two numbered versions of one id are versions, not duplicates: the higher one applies.
    const versions = folder({
      "r.yaml": `tenant: acme\nrules:\n  - { id: x, version: 1, type: count, event: a.b, target: 1 }\n  - { id: x, version: 2, type: count, event: a.b, target: 3 }\n`,
    });
    const book = loadRules(versions);
    expect(book.forTenant("acme").at(ANY_TIME).byId.get("x")?.rule).toMatchObject({ version: 2, target: 3 });
    expect(book.forTenant("acme").history()).toHaveLength(2);
  });

  it("reports duplicates across files of one tenant but allows the same id in different tenants", () => {
    const d = folder({
      "a.yaml": `tenant: acme\nrules:\n  - { id: x, version: 1, type: count, event: a.b, target: 1 }\n`,
      "b.yaml": `tenant: acme\nrules:\n  - { id: x, version: 1, type: count, event: a.b, target: 1 }\n`,
    });
    const problems = problemsOf(d);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ file: join(d, "b.yaml"), rule: "x" });
    expect(problems[0]!.reason).toMatch(/duplicate/i);
    expect(problems[0]!.reason).toContain(join(d, "a.yaml"));

    const ok = folder({
      "a.yaml": `rules:\n  - { id: x, version: 1, type: count, event: a.b, target: 1 }\n`,
      "b.yaml": `tenant: acme\nrules:\n  - { id: x, version: 2, type: count, event: a.b, target: 1 }\n`,
    });
    expect(loadRules(ok).forTenant("acme").at(ANY_TIME).byId.get("x")?.rule.version).toBe(2);
  });

  it("lists every problem, across rules and files", () => {
    const d = folder({
      "a.yaml": [
        "rules:",
        "  - { id: x, version: 1, type: count, event: a.b, target: 0 }",
        "  - { id: ok, version: 1, type: count, event: a.b, target: 1 }",
        "  - { id: v, version: 1, type: count, event: a.b, target: 1, where: { user.plan: pro } }",
        "  - { version: 1, type: count, event: a.b, target: 1 }",
        "",
      ].join("\n"),
      "b.yaml": "rules: [\n",
    });
    const problems = problemsOf(d);
    const a = join(d, "a.yaml");
    const b = join(d, "b.yaml");
    expect(problems.filter((p) => p.file === a).map((p) => [p.rule, p.path])).toEqual([
      ["x", "target"],
      ["v", "where.user.plan"],
      ["#3", "id"],
    ]);
    const parse = problems.filter((p) => p.file === b);
    expect(parse).toHaveLength(1);
    expect(parse[0]!.reason).toMatch(/cannot parse/);

    // the error message lists them all too
    expect(() => loadRules(d)).toThrow(/rule x at target/);
    expect(() => loadRules(d)).toThrow(/rule v at where\.user\.plan/);
    expect(() => loadRules(d)).toThrow(b);
  });
});

// ---------------------------------------------------------------- applyEvents

describe("applyEvents", () => {
  const rules = [rule({ id: "two", event: "a.b", target: 2 }), rule({ id: "filtered", event: "a.b", where: { "payload.k": 1 }, target: 1 })];
  const set = compileRuleSet(rules);
  const item = (seq: number, id: string, type = "a.b", payload?: Record<string, unknown>): SeqEvent => ({
    seq,
    ev: ev(id, type, payload ? { payload } : {}),
  });

  it("applies new events, advancing seq and recording ids", () => {
    const r = applyEvents(emptyUserState(), [item(1, "e1"), item(2, "e2")], set, 64);
    expect(r).toMatchObject({ dirty: true, applied: 2, duplicates: 0, unchanged: 0, failed: [] });
    expect(r.state.seq).toBe(2);
    expect(r.state.ids).toEqual(["e1", "e2"]);
    expect(countOf(r.state.eval, "two")).toBe(2);
    expect(r.unlocks.map((u) => u.achievement_id)).toEqual(["two"]);
  });

  it("appends unlocks to the outbox", () => {
    const start: UserState = { ...emptyUserState(), outbox: [] };
    const r1 = applyEvents(start, [item(1, "e1", "a.b", { k: 1 })], set, 64);
    expect(r1.state.outbox.map((u) => u.achievement_id)).toEqual(["filtered"]);
    const r2 = applyEvents(r1.state, [item(2, "e2")], set, 64);
    expect(r2.unlocks.map((u) => u.achievement_id)).toEqual(["two"]);
    expect(r2.state.outbox.map((u) => u.achievement_id)).toEqual(["filtered", "two"]);
    expect(r2.state.outbox[1]).toEqual(r2.unlocks[0]);
    expect(start.outbox).toEqual([]);
  });

  it("keeps no fingerprint and hands nothing to the reorder window for an event whose evaluation throws", () => {
    // A rule that fails on payload.boom, as a rule bug or an unexpected value would.
    const failing: RuleSource = {
      at: (t) => {
        const base = set.at(t);
        const byEventType = new Map([...base.byEventType].map(([type, cs]) => [type, cs.map((c) => ({ ...c, admits: (e: Parameters<typeof c.admits>[0]) => (e.get("payload.boom") === true ? fail() : c.admits(e)) }))]));
        return { ...base, byEventType, orderedTypes: new Set(["a.b"]) };
      },
    };
    const fail = (): never => {
      throw new Error("boom");
    };
    const fps = [{ event: ["a.b"], fields: ["payload.order"], within: 60_000 }];
    const bad = item(1, "e1", "a.b", { order: 7, boom: true });
    const r1 = applyEvents(emptyUserState(), [bad, item(2, "e2", "a.b", { order: 8 })], failing, 64, "eager", fps);
    expect(r1.failed.map((f) => f.item.seq)).toEqual([1]);
    expect(r1.toOrder.map((i) => i.seq)).toEqual([2]);
    expect(r1.applied).toBe(1);
    // The corrected event, redriven under a new id, is not a near-duplicate of the one that failed.
    const fixed = item(3, "e1-fixed", "a.b", { order: 7 });
    const r2 = applyEvents(r1.state, [fixed], failing, 64, "eager", fps);
    expect(r2).toMatchObject({ applied: 1, fingerprinted: 0, failed: [] });
    // While a genuine retry of a processed event still is.
    const r3 = applyEvents(r2.state, [item(4, "e1-again", "a.b", { order: 7 })], failing, 64, "eager", fps);
    expect(r3).toMatchObject({ applied: 0, fingerprinted: 1 });
  });

  it("treats seq at or below state.seq as a duplicate", () => {
    const r1 = applyEvents(emptyUserState(), [item(5, "e5")], set, 64);
    const r2 = applyEvents(r1.state, [item(5, "other"), item(3, "older")], set, 64);
    expect(r2).toMatchObject({ dirty: false, applied: 0, duplicates: 2, unchanged: 0 });
    expect(r2.state).toBe(r1.state);
  });

  it("treats a repeated event id as a duplicate even with a higher seq", () => {
    const r1 = applyEvents(emptyUserState(), [item(1, "e1")], set, 64);
    const r2 = applyEvents(r1.state, [item(10, "e1")], set, 64);
    expect(r2).toMatchObject({ dirty: false, applied: 0, duplicates: 1 });
    expect(countOf(r2.state.eval, "two")).toBe(1);
    // also within one batch
    const r3 = applyEvents(emptyUserState(), [item(1, "e1"), item(2, "e1"), item(3, "e3")], set, 64);
    expect(r3).toMatchObject({ applied: 2, duplicates: 1 });
    expect(countOf(r3.state.eval, "two")).toBe(2);
  });

  it("counts events that change nothing as unchanged and leaves the state clean", () => {
    const r = applyEvents(emptyUserState(), [item(1, "x1", "other.type"), item(2, "x2", "other.type")], set, 64);
    expect(r).toMatchObject({ dirty: false, applied: 0, duplicates: 0, unchanged: 2, unlocks: [] });
    expect(r.state.seq).toBe(0);
    expect(r.state.ids).toEqual([]);
  });

  it("counts events after an unlock as unchanged", () => {
    const one = compileRuleSet([rule({ id: "one", event: "a.b", target: 1 })]);
    const r = applyEvents(emptyUserState(), [item(1, "e1"), item(2, "e2")], one, 64);
    expect(r).toMatchObject({ dirty: true, applied: 1, unchanged: 1 });
    expect(r.state.seq).toBe(1);
    expect(r.state.ids).toEqual(["e1"]);
  });

  it("moves full lists of recentIds ids to archive chunks, and finds a retry in them", () => {
    const many = compileRuleSet([rule({ id: "lots", event: "a.b", target: 1000 })]);
    const items = Array.from({ length: 10 }, (_, i) => item(i + 1, `e${i + 1}`));
    const r = applyEvents(emptyUserState(), items, many, 3);
    expect(r.applied).toBe(10);
    // Three full lists became chunks 0-2; the tenth id waits in the state.
    expect(r.chunks.map((c) => [c.n, c.ids])).toEqual([
      [0, ["e1", "e2", "e3"]],
      [1, ["e4", "e5", "e6"]],
      [2, ["e7", "e8", "e9"]],
    ]);
    expect(r.state.ids).toEqual(["e10"]);
    expect(r.state.arch?.e.map(([n]) => n)).toEqual([0, 1, 2]);
    expect(r.state.seq).toBe(10);
    // A producer's retry of e2 long after (new stream sequence): its time points at chunk 0, whose ids know it.
    const retry = { seq: 50, ev: items[1]!.ev };
    const covering = chunksCovering(r.state, retry.ev.occurredAt);
    expect(covering).toContainEqual({ phase: "e", n: 0 });
    const again = applyEvents(r.state, [retry], many, 3, "all", [], new Set(r.chunks[0]!.ids));
    expect(again.duplicates).toBe(1);
    expect(countOf(again.state.eval, "lots")).toBe(10);
    const none = applyEvents(emptyUserState(), items, many, 0);
    expect(none.state.ids).toEqual([]);
    expect(countOf(none.state.eval, "lots")).toBe(10);
  });

  it("does not mutate the input state", () => {
    const start = applyEvents(emptyUserState(), [item(1, "e1")], set, 64).state;
    const snapshot = structuredClone(start);
    applyEvents(start, [item(2, "e2"), item(3, "e3", "a.b", { k: 1 })], set, 64);
    expect(start).toEqual(snapshot);
  });
});

// ---------------------------------------------------------------- property

describe("count rules are order- and duplicate-insensitive", () => {
  const TYPES = ["a.x", "a.y", "a.z"] as const;
  const ruleArb = fc.record({
    types: fc.subarray([...TYPES], { minLength: 1 }),
    target: fc.integer({ min: 1, max: 6 }),
    filter: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
  });
  const eventArb = fc.record({ type: fc.constantFrom(...TYPES), k: fc.integer({ min: 0, max: 3 }) });

  const scenario = fc
    .record({
      rules: fc.array(ruleArb, { minLength: 1, maxLength: 4 }),
      events: fc.array(eventArb, { maxLength: 25 }),
    })
    .chain(({ rules, events }) =>
      fc.record({
        rules: fc.constant(rules),
        events: fc.constant(events),
        order: fc.shuffledSubarray(
          events.map((_, i) => i),
          { minLength: events.length, maxLength: events.length },
        ),
        retries: fc.array(fc.record({ pick: fc.nat(), at: fc.nat() }), { maxLength: 10 }),
        redeliveries: fc.array(fc.record({ pick: fc.nat(), at: fc.nat() }), { maxLength: 10 }),
        batch: fc.integer({ min: 1, max: 8 }),
      }),
    );

  function finalState(items: SeqEvent[], set: ReturnType<typeof compileRuleSet>, batch: number): UserState {
    let s = emptyUserState();
    for (let i = 0; i < items.length; i += batch) s = applyEvents(s, items.slice(i, i + batch), set, 64).state;
    return s;
  }

  it("yields the same unlocks and counts for any permutation with duplicates", () => {
    fc.assert(
      fc.property(scenario, ({ rules, events, order, retries, redeliveries, batch }) => {
        const compiled = rules.map((r, i) =>
          rule({ id: `r${i}`, event: r.types, target: r.target, ...(r.filter === undefined ? {} : { where: { "payload.k": { gte: r.filter } } }) }),
        );
        const set = compileRuleSet(compiled);
        const valid = events.map((e, i) => ev(`e${i}`, e.type, { payload: { k: e.k } }));

        // Reference: each event once, in order.
        const reference = finalState(
          valid.map((v, i) => ({ seq: i + 1, ev: v })),
          set,
          valid.length || 1,
        );

        // The stream: the events permuted, plus producer retries of earlier
        // events as new messages (new stream sequences) at later positions.
        const stream: ValidEvent[] = order.map((i) => valid[i]!);
        for (const d of retries) {
          if (stream.length === 0) break;
          const at = 1 + (d.at % stream.length);
          stream.splice(at, 0, stream[d.pick % at]!);
        }
        const messages: SeqEvent[] = stream.map((v, i) => ({ seq: i + 1, ev: v }));
        // Deliveries: the messages in order, plus redeliveries of earlier
        // messages (same stream sequence) at later positions.
        const deliveries = [...messages];
        for (const d of redeliveries) {
          if (deliveries.length === 0) break;
          const at = 1 + (d.at % deliveries.length);
          deliveries.splice(at, 0, deliveries[d.pick % at]!);
        }
        const permuted = finalState(deliveries, set, batch);

        const counts = (s: UserState) => Object.fromEntries(compiled.map((r) => [r.id, countOf(s.eval, r.id) ?? 0]));
        expect(Object.keys(permuted.eval.unlocked).sort()).toEqual(Object.keys(reference.eval.unlocked).sort());
        expect(permuted.outbox.map((u) => u.achievement_id).sort()).toEqual(Object.keys(reference.eval.unlocked).sort());
        expect(counts(permuted)).toEqual(counts(reference));
      }),
      { numRuns: 100 },
    );
  });
});

describe("regressions", () => {
  it("counts an event once when a rule lists its type twice", () => {
    const { state, unlocks } = run(emptyEvalState(), [ev("e1", "a.b")], [rule({ id: "twice", event: ["a.b", "a.b"], target: 2 })]);
    expect(state.rules.twice).toMatchObject({ k: "count", n: 1, ids: ["e1"] });
    expect(unlocks).toEqual([]);
  });

  it("does not find inherited properties through a field path", () => {
    const set = [rule({ id: "ctor", event: "a.b", where: { "payload.constructor": { exists: true } }, target: 1 })];
    expect(run(emptyEvalState(), [ev("e1", "a.b")], set).unlocks).toEqual([]);
    expect(run(emptyEvalState(), [ev("e2", "a.b", { payload: { constructor: "x" } })], set).unlocks).toHaveLength(1);
  });

  it("reports a missing rules path as a RulesError", () => {
    expect(() => loadRules(join(tmpdir(), "achd-no-such-rules-dir"))).toThrow(RulesError);
  });
});

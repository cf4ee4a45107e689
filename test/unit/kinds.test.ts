/**
 * Behaviour of the rule types (count with tiers and windows, threshold,
 * streak, sequence, composite) and of the features every rule shares
 * (prerequisites, hidden, segment, availability, repeatable, reward,
 * versions, cross-rule validation), through the public evaluator.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateEvent, type ValidEvent } from "../../src/events/mod.ts";
import { applyEvents, emptyUserState, type SeqEvent, type UserState } from "../../src/core/mod.ts";
import {
  addPeriod,
  checkRuleSet,
  compileRuleSet,
  emptyEvalState,
  evaluate,
  loadRules,
  progressOf,
  RuleBook,
  RuleSchema,
  RulesError,
  streakStats,
  SUM_SCALE,
  TenantRules,
  unlockId,
  type EvalState,
  type Rule,
  type RuleSource,
  type RuleVersion,
  type Unlock,
} from "../../src/rules/mod.ts";
import type { CountState } from "../../src/rules/kinds/count.ts";
import type { StreakState } from "../../src/rules/kinds/streak.ts";
import type { ThresholdState } from "../../src/rules/kinds/threshold.ts";

// ---------------------------------------------------------------- helpers

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

type EvOpts = { payload?: Record<string, unknown>; attributes?: Record<string, unknown>; tenant?: string; user?: string };

/** A validated event; `at` is an RFC 3339 string or epoch ms. */
function ev(id: string, type: string, at: string | number, o: EvOpts = {}): ValidEvent {
  const r = validateEvent({
    event_id: id,
    event_type: type,
    tenant_id: o.tenant ?? "acme",
    user_id: o.user ?? "u1",
    occurred_at: typeof at === "number" ? new Date(at).toISOString() : at,
    ...(o.payload ? { payload: o.payload } : {}),
    ...(o.attributes ? { attributes: o.attributes } : {}),
  });
  if (!r.ok) throw new Error(`bad test event: ${r.rejection.message}`);
  return r.value;
}

function rule(r: Record<string, unknown>): Rule {
  return RuleSchema.parse(r);
}

/** Epoch ms of an RFC 3339 string. */
function ms(s: string): number {
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`bad test date ${s}`);
  return t;
}

/** Canonical ISO form (what unlocks carry). */
function iso(s: string | number): string {
  return new Date(typeof s === "number" ? s : ms(s)).toISOString();
}

/** Days since 1970-01-01 of a UTC civil date, computed with Date.UTC. */
function utcDay(y: number, m: number, d: number): number {
  return Date.UTC(y, m - 1, d) / DAY;
}

/** Applies events in the given order through evaluate; the unlocks of each event and all of them. */
function run(events: readonly ValidEvent[], source: RuleSource | Rule[], state: EvalState = emptyEvalState()) {
  const src = Array.isArray(source) ? compileRuleSet(source) : source;
  let s = state;
  const unlocks: Unlock[] = [];
  const each: Unlock[][] = [];
  const changed: boolean[] = [];
  for (const e of events) {
    const r = evaluate(s, e, src);
    s = r.state;
    unlocks.push(...r.unlocks);
    each.push(r.unlocks);
    changed.push(r.changed);
  }
  return { state: s, unlocks, each, changed };
}

/** Achievement keys (with tier) of a list of unlocks, in order. */
function keys(us: readonly Unlock[]): string[] {
  return us.map((u) => (u.tier ? `${u.achievement_id}:${u.tier}` : u.achievement_id));
}

function issuesOf(r: Record<string, unknown>): string[] {
  const p = RuleSchema.safeParse(r);
  if (p.success) return [];
  return p.error.issues.map((i) => i.path.join("."));
}

// ---------------------------------------------------------------- count: tiers

describe("count with tiers", () => {
  const lessons = rule({
    id: "lessons",
    type: "count",
    event: "lesson.completed",
    tiers: [
      { name: "bronze", target: 2 },
      { name: "silver", target: 4 },
    ],
  });
  const times = ["2026-04-13T10:00:00Z", "2026-04-13T11:00:00Z", "2026-04-13T12:00:00Z", "2026-04-13T13:00:00Z"];

  it("unlocks each tier separately and in order, each with its tier and own unlock id", () => {
    const events = times.map((t, i) => ev(`e${i + 1}`, "lesson.completed", t));
    const r = run(events, [lessons]);
    expect(r.each.map((us) => us.map((u) => u.tier))).toEqual([[], ["bronze"], [], ["silver"]]);
    const [bronze, silver] = r.unlocks as [Unlock, Unlock];
    expect(bronze).toMatchObject({
      achievement_id: "lessons",
      rule_id: "lessons",
      rule_version: 1,
      tier: "bronze",
      occurrence: 1,
      unlock_id: unlockId("acme", "u1", "lessons", "bronze", 1),
      unlocked_at: iso(times[1]!),
      trigger_event_ids: ["e1", "e2"],
    });
    expect(silver).toMatchObject({
      tier: "silver",
      unlock_id: unlockId("acme", "u1", "lessons", "silver", 1),
      unlocked_at: iso(times[3]!),
      trigger_event_ids: ["e1", "e2", "e3", "e4"],
    });
    expect(bronze.unlock_id).not.toBe(silver.unlock_id);
    expect(Object.keys(r.state.unlocked).sort()).toEqual(["lessons:bronze", "lessons:silver"]);
  });

  it("reports progress towards the next locked tier", () => {
    const set = compileRuleSet([lessons]);
    const now = ms(times[3]!);
    const after = (n: number) => run(times.slice(0, n).map((t, i) => ev(`e${i + 1}`, "lesson.completed", t)), set).state;
    expect(progressOf(emptyEvalState(), set, now)).toEqual([
      { achievement_id: "lessons", tier: "bronze", rule_id: "lessons", rule_version: 1, type: "count", current: 0, target: 2 },
    ]);
    expect(progressOf(after(3), set, now)).toEqual([
      { achievement_id: "lessons", tier: "silver", rule_id: "lessons", rule_version: 1, type: "count", current: 3, target: 4 },
    ]);
    expect(progressOf(after(4), set, now)).toEqual([]);
  });

  it("emits every tier one event passes, lowest first", () => {
    const spend = rule({
      id: "spend",
      type: "threshold",
      event: "purchase.placed",
      field: "payload.amount",
      aggregate: "sum",
      tiers: [
        { name: "bronze", target: 10 },
        { name: "silver", target: 50 },
        { name: "gold", target: 100 },
      ],
    });
    const r = run([ev("p1", "purchase.placed", "2026-04-13T10:00:00Z", { payload: { amount: 120 } })], [spend]);
    expect(keys(r.unlocks)).toEqual(["spend:bronze", "spend:silver", "spend:gold"]);
    expect(new Set(r.unlocks.map((u) => u.unlocked_at))).toEqual(new Set([iso("2026-04-13T10:00:00Z")]));
    expect(new Set(r.unlocks.map((u) => u.unlock_id)).size).toBe(3);
  });

  it("requires increasing tier targets and distinct tier names", () => {
    const base = { id: "t", type: "count", event: "a.b" };
    expect(issuesOf({ ...base, tiers: [{ name: "bronze", target: 4 }, { name: "silver", target: 2 }] })).toContain("tiers.1.target");
    expect(issuesOf({ ...base, tiers: [{ name: "bronze", target: 2 }, { name: "silver", target: 2 }] })).toContain("tiers.1.target");
    expect(issuesOf({ ...base, tiers: [{ name: "a", target: 1 }, { name: "b", target: 2 }, { name: "c", target: 2 }] })).toEqual(["tiers.2.target"]);
    expect(issuesOf({ ...base, tiers: [{ name: "bronze", target: 1 }, { name: "bronze", target: 2 }] })).toContain("tiers.1.name");
    expect(issuesOf({ ...base, tiers: [{ name: "bronze", target: 1 }, { name: "silver", target: 2 }] })).toEqual([]);
  });

  it("requires exactly one of target and tiers", () => {
    const base = { id: "t", type: "count", event: "a.b" };
    expect(issuesOf({ ...base, target: 3, tiers: [{ name: "bronze", target: 1 }] })).toEqual(["target"]);
    expect(issuesOf(base)).toEqual(["target"]);
    expect(issuesOf({ ...base, target: 3 })).toEqual([]);
    for (const type of ["threshold", "streak"]) {
      const extra = type === "threshold" ? { field: "payload.v", aggregate: "sum" } : { period: "day" };
      expect(issuesOf({ ...base, ...extra, type })).toEqual(["target"]);
      expect(issuesOf({ ...base, ...extra, type, target: 1, tiers: [{ name: "x", target: 2 }] })).toEqual(["target"]);
    }
  });
});

// ---------------------------------------------------------------- count: windows

describe("count with a sliding window", () => {
  const r3in7 = rule({ id: "busy-week", type: "count", event: "a.b", target: 3, window: { sliding: "7d" } });
  const day = (d: number, h = 10) => ms("2026-04-01T00:00:00Z") + d * DAY + h * HOUR;

  it("unlocks on three events within seven days", () => {
    const r = run([ev("d0", "a.b", day(0)), ev("d3", "a.b", day(3)), ev("d6", "a.b", day(6))], [r3in7]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 1]);
    expect(r.unlocks[0]).toMatchObject({ unlocked_at: iso(day(6)), trigger_event_ids: ["d0", "d3", "d6"] });
  });

  it("does not unlock on three events spread over ten days, but does once three fall in one window", () => {
    const spread = run([ev("d0", "a.b", day(0)), ev("d5", "a.b", day(5)), ev("d10", "a.b", day(10))], [r3in7]);
    expect(spread.unlocks).toEqual([]);
    const later = run([ev("d12", "a.b", day(12))], [r3in7], spread.state);
    expect(later.unlocks).toHaveLength(1);
    expect(later.unlocks[0]).toMatchObject({ unlocked_at: iso(day(12)), trigger_event_ids: ["d5", "d10", "d12"] });
  });

  it("dates the unlock at the third event of the first qualifying window, even when a late event completes it", () => {
    // d0, d4 and d8 12:00 are not three in any 7 days; a late d1 makes [d0, d1, d4] one.
    const r = run([ev("d0", "a.b", day(0)), ev("d4", "a.b", day(4)), ev("d8", "a.b", day(8, 12)), ev("d1", "a.b", day(1))], [r3in7]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 1]);
    expect(r.unlocks[0]).toMatchObject({ unlocked_at: iso(day(4)), trigger_event_ids: ["d0", "d1", "d4"] });
  });
});

describe("count in a calendar window", () => {
  const twoADay = (tz: string) => rule({ id: "two-a-day", type: "count", event: "a.b", target: 2, window: { calendar: "day" }, timezone: tz });

  it("counts events of the same local day together across different UTC days", () => {
    // 10:00 and 23:30 in New York on Apr 13 are 14:00Z on Apr 13 and 03:30Z on Apr 14.
    const events = [ev("m", "a.b", "2026-04-13T10:00:00-04:00"), ev("n", "a.b", "2026-04-13T23:30:00-04:00")];
    const ny = run(events, [twoADay("America/New_York")]);
    expect(ny.unlocks).toHaveLength(1);
    expect(ny.unlocks[0]).toMatchObject({ unlocked_at: "2026-04-14T03:30:00.000Z", trigger_event_ids: ["m", "n"] });
    expect(run(events, [twoADay("UTC")]).unlocks).toEqual([]);
  });

  it("separates different local days that share a UTC day", () => {
    // 23:30 Apr 13 and 00:30 Apr 14 in New York are both on Apr 14 in UTC.
    const events = [ev("late", "a.b", "2026-04-13T23:30:00-04:00"), ev("early", "a.b", "2026-04-14T00:30:00-04:00")];
    expect(run(events, [twoADay("America/New_York")]).unlocks).toEqual([]);
    expect(run(events, [twoADay("UTC")]).unlocks).toHaveLength(1);
  });

  it("takes the event's attributes.timezone over the rule's", () => {
    const attributes = { timezone: "America/New_York" };
    const events = [ev("m", "a.b", "2026-04-13T14:00:00Z", { attributes }), ev("n", "a.b", "2026-04-14T03:30:00Z", { attributes })];
    expect(run(events, [twoADay("UTC")]).unlocks).toHaveLength(1);
  });
});

// ---------------------------------------------------------------- threshold

describe("threshold", () => {
  const sum = (target: number) => rule({ id: "spend", type: "threshold", event: "purchase.placed", field: "payload.amount", aggregate: "sum", target });
  const buy = (id: string, amount: unknown, hour = 10) => ev(id, "purchase.placed", ms("2026-04-13T00:00:00Z") + hour * HOUR, { payload: { amount } });

  it("sums decimals exactly: 99.99 + 0.01 reaches 100", () => {
    const set = compileRuleSet([sum(100)]);
    const first = run([buy("p1", 99.99)], set);
    expect(first.unlocks).toEqual([]);
    expect(progressOf(first.state, set, 0)[0]).toMatchObject({ type: "threshold", current: 99.99, target: 100 });
    const second = run([buy("p2", 0.01, 11)], set, first.state);
    expect(second.unlocks).toHaveLength(1);
    expect(second.unlocks[0]).toMatchObject({ unlocked_at: iso("2026-04-13T11:00:00Z"), trigger_event_ids: ["p1", "p2"] });
    expect(second.state.rules.spend).toMatchObject({ k: "sum", v: 100 * SUM_SCALE });
  });

  it("reaches a bound that floating-point addition would miss (0.7 + 0.1 = 0.8)", () => {
    expect(0.7 + 0.1 < 0.8).toBe(true); // why exact sums matter
    expect(run([buy("p1", 0.7), buy("p2", 0.1, 11)], [sum(0.8)]).unlocks).toHaveLength(1);
    expect(run([buy("p2", 0.1), buy("p1", 0.7, 11)], [sum(0.8)]).unlocks).toHaveLength(1);
  });

  it("ignores non-numeric values of the summed field", () => {
    const r = run(
      [buy("s", "50"), buy("n", null), buy("b", true), buy("o", { v: 1 }), buy("arr", [70]), ev("none", "purchase.placed", "2026-04-13T10:00:00Z"), buy("p60", 60, 11), buy("p40", 40, 12)],
      [sum(100)],
    );
    expect(r.changed).toEqual([false, false, false, false, false, false, true, true]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 0, 0, 0, 0, 1]);
    expect(r.unlocks[0]!.trigger_event_ids).toEqual(["p60", "p40"]);
  });

  it("value: one purchase of at least 100 (amounts are not added up)", () => {
    const big = rule({ id: "big", type: "threshold", event: "purchase.placed", field: "payload.amount", aggregate: "value", target: 100 });
    const r = run([buy("p60", 60), buy("p70", 70, 11), buy("p50", 50, 12), buy("p100", 100, 13)], [big]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 1]);
    expect(r.unlocks[0]).toMatchObject({ unlocked_at: iso("2026-04-13T13:00:00Z"), trigger_event_ids: ["p100"] });
    // a sum of the same amounts would have unlocked on the second purchase
    expect(run([buy("p60", 60), buy("p70", 70, 11)], [sum(100)]).each.map((u) => u.length)).toEqual([0, 1]);
  });

  it("max: keeps the largest value and unlocks when it reaches the target", () => {
    const best = rule({ id: "best", type: "threshold", event: "score.posted", field: "payload.score", aggregate: "max", target: 90 });
    const post = (id: string, score: number, h: number) => ev(id, "score.posted", ms("2026-04-13T00:00:00Z") + h * HOUR, { payload: { score } });
    const r = run([post("a", 70, 1), post("b", 85, 2), post("c", 60, 3)], [best]);
    expect(r.changed).toEqual([true, true, false]);
    expect((r.state.rules.best as ThresholdState).k).toBe("max");
    expect(r.state.rules.best).toMatchObject({ v: 85 });
    expect(run([post("d", 95, 4)], [best], r.state).unlocks[0]!.trigger_event_ids).toEqual(["d"]);
  });

  it("distinct: five different course ids, repeats do not count", () => {
    const courses = rule({ id: "explorer", type: "threshold", event: "course.completed", field: "payload.course_id", aggregate: "distinct", target: 5 });
    const done = (id: string, course: string, h: number) => ev(id, "course.completed", ms("2026-04-13T00:00:00Z") + h * HOUR, { payload: { course_id: course } });
    const events = [done("e1", "c1", 1), done("e2", "c2", 2), done("e3", "c1", 3), done("e4", "c3", 4), done("e5", "c2", 5), done("e6", "c4", 6), done("e7", "c4", 7)];
    const set = compileRuleSet([courses]);
    const r = run(events, set);
    expect(r.unlocks).toEqual([]);
    expect(r.changed).toEqual([true, true, false, true, false, true, false]);
    expect(progressOf(r.state, set, 0)[0]).toMatchObject({ current: 4, target: 5 });
    const last = run([done("e8", "c5", 8)], set, r.state);
    expect(last.unlocks).toHaveLength(1);
    expect(last.unlocks[0]).toMatchObject({ unlocked_at: iso("2026-04-13T08:00:00Z"), trigger_event_ids: ["e1", "e2", "e4", "e6", "e8"] });
  });
});

// ---------------------------------------------------------------- streak

describe("streak", () => {
  const streak = (extra: Record<string, unknown> = {}) => rule({ id: "daily", type: "streak", event: "app.opened", period: "day", target: 3, ...extra });
  /** An app.opened event on April `d` 2026 at `h` UTC. */
  const open = (id: string, d: number, h = 10, o: EvOpts = {}) => ev(id, "app.opened", Date.UTC(2026, 3, d, h), o);

  it("unlocks on three consecutive days, with the first qualifying event of each day as triggers", () => {
    const r = run([open("a", 13, 10), open("a2", 13, 18), open("b", 14), open("c", 15, 9)], [streak()]);
    expect(r.changed).toEqual([true, false, true, true]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 1]);
    expect(r.unlocks[0]).toMatchObject({ unlocked_at: iso(Date.UTC(2026, 3, 15, 9)), trigger_event_ids: ["a", "b", "c"] });
  });

  it("is broken by a missed day", () => {
    const set = compileRuleSet([streak()]);
    const r = run([open("a", 13), open("b", 14), open("d", 16)], set);
    expect(r.unlocks).toEqual([]);
    expect(progressOf(r.state, set, 0)[0]).toMatchObject({ type: "streak", current: 1, best: 2, target: 3 });
    const more = run([open("e", 17), open("f", 18)], set, r.state);
    expect(more.each.map((u) => u.length)).toEqual([0, 1]);
    expect(more.unlocks[0]!.trigger_event_ids).toEqual(["d", "e", "f"]);
  });

  it("takes each event's day in its attributes.timezone, else in the rule's timezone", () => {
    // In Los Angeles these are Apr 12 23:00, Apr 13 13:00 and Apr 14 13:00; in UTC Apr 13, 13 and 14.
    const times = ["2026-04-13T06:00:00Z", "2026-04-13T20:00:00Z", "2026-04-14T20:00:00Z"];
    const la = { timezone: "America/Los_Angeles" };
    expect(run(times.map((t, i) => ev(`e${i}`, "app.opened", t, { attributes: la })), [streak()]).unlocks).toHaveLength(1);
    expect(run(times.map((t, i) => ev(`e${i}`, "app.opened", t)), [streak()]).unlocks).toEqual([]);
    expect(run(times.map((t, i) => ev(`e${i}`, "app.opened", t)), [streak({ timezone: "America/Los_Angeles" })]).unlocks).toHaveLength(1);
    // an event's zone wins over the rule's
    expect(run(times.map((t, i) => ev(`e${i}`, "app.opened", t, { attributes: { timezone: "UTC" } })), [streak({ timezone: "America/Los_Angeles" })]).unlocks).toEqual([]);
    // an unknown zone never reaches the evaluator: the event is refused
    const bad = validateEvent({ event_id: "x", event_type: "app.opened", tenant_id: "acme", user_id: "u1", occurred_at: times[0], attributes: { timezone: "Mars/Olympus" } });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.rejection.issues.map((i) => i.path)).toEqual(["attributes.timezone"]);
  });

  it("needs min_per_period events for a day to count", () => {
    const r = run(
      [open("a1", 13, 8), open("a2", 13, 9), open("b1", 14), open("c1", 15, 8), open("c2", 15, 9), open("d1", 16, 8), open("d2", 16, 9)],
      [streak({ min_per_period: 2 })],
    );
    expect(r.unlocks).toEqual([]); // Apr 14 had one event
    const more = run([open("e1", 17, 8), open("e2", 17, 9)], [streak({ min_per_period: 2 })], r.state);
    expect(more.each.map((u) => u.length)).toEqual([0, 1]);
    expect(more.unlocks[0]).toMatchObject({ unlocked_at: iso(Date.UTC(2026, 3, 17, 9)), trigger_event_ids: ["c2", "d2", "e2"] });
  });

  it("counts a day completed by a late event", () => {
    const r = run([open("a1", 13, 8), open("a2", 13, 9), open("b1", 14), open("c1", 15, 8), open("c2", 15, 9), open("b2", 14, 20)], [streak({ min_per_period: 2 })]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 0, 0, 1]);
    expect(r.unlocks[0]!.trigger_event_ids).toEqual(["a2", "b2", "c2"]);
  });

  it("grace forgives one missed day, but not two within `per` days", () => {
    const five = (grace?: { per: number }) => streak({ target: 5, ...(grace ? { grace } : {}) });
    const oneMiss = [1, 2, 4, 5, 6].map((d) => open(`d${d}`, d));
    const r = run(oneMiss, [five({ per: 7 })]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 0, 1]);
    expect(r.unlocks[0]!.unlocked_at).toBe(iso(Date.UTC(2026, 3, 6, 10)));
    // the forgiven day keeps the streak but does not add to it
    expect(run(oneMiss.slice(0, 4), [five({ per: 7 })]).unlocks).toEqual([]);
    expect(run(oneMiss, [five()]).unlocks).toEqual([]);
    // missed Apr 3 and Apr 6: the second miss is within 7 days of the first
    expect(run([1, 2, 4, 5, 7, 8].map((d) => open(`d${d}`, d)), [five({ per: 7 })]).unlocks).toEqual([]);
    expect(run([1, 2, 4, 5, 7, 8].map((d) => open(`d${d}`, d)), [streak({ target: 4, grace: { per: 7 } })]).unlocks).toHaveLength(1);
  });

  it("freezes earned every 3 days (at most 1 held) cover a missed day", () => {
    const five = (freezes?: { earn_every: number; max: number }) => streak({ target: 5, ...(freezes ? { freezes } : {}) });
    const f = { earn_every: 3, max: 1 };
    const covered = [1, 2, 3, 5, 6].map((d) => open(`d${d}`, d));
    const r = run(covered, [five(f)]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 0, 1]);
    expect(run(covered, [five()]).unlocks).toEqual([]);
    // no freeze earned yet after two days
    expect(run([1, 2, 4, 5, 6].map((d) => open(`d${d}`, d)), [five(f)]).unlocks).toEqual([]);
    // one freeze cannot cover two missed days
    expect(run([1, 2, 3, 6, 7, 8].map((d) => open(`d${d}`, d)), [five(f)]).unlocks).toEqual([]);
  });

  it("counts ISO weeks (Monday first) with period: week", () => {
    const weekly = rule({ id: "weekly", type: "streak", event: "app.opened", period: "week", target: 3 });
    // Sun Apr 19 (W16), Mon Apr 20 (W17), Fri May 1 (W18)
    expect(run([open("w16", 19), open("w17", 20), ev("w18", "app.opened", "2026-05-01T10:00:00Z")], [weekly]).unlocks).toHaveLength(1);
    // W16, W18, W19: a week missed
    expect(run([open("w16", 13), open("w18", 27), ev("w19", "app.opened", "2026-05-04T10:00:00Z")], [weekly]).unlocks).toEqual([]);
    // Mon Apr 13 and Sun Apr 19 are one week
    const same = run([open("mon", 13), open("sun", 19), open("next", 20)], [weekly]);
    expect(same.changed).toEqual([true, false, true]);
    expect(same.unlocks).toEqual([]);
  });

  it("counts local days across the Europe/Berlin DST changes", () => {
    const berlin = streak({ timezone: "Europe/Berlin" });
    // Mar 29 2026 has 23 hours in Berlin; these are Mar 28, 29 and 30 there (Mar 28, 29, 29 in UTC).
    const spring = ["2026-03-28T23:30:00+01:00", "2026-03-29T23:30:00+02:00", "2026-03-30T00:30:00+02:00"].map((t, i) => ev(`s${i}`, "app.opened", t));
    expect(run(spring, [berlin]).unlocks).toHaveLength(1);
    expect(run(spring, [streak()]).unlocks).toEqual([]);
    // 01:59 CET and 03:01 CEST on Mar 29 are two minutes apart and the same day
    const jump = run([ev("j1", "app.opened", "2026-03-29T01:59:00+01:00"), ev("j2", "app.opened", "2026-03-29T03:01:00+02:00")], [berlin]);
    expect(jump.changed).toEqual([true, false]);
    // Oct 25 2026 has 25 hours in Berlin
    const autumn = ["2026-10-24T23:30:00+02:00", "2026-10-25T23:30:00+01:00", "2026-10-26T00:30:00+01:00"].map((t, i) => ev(`a${i}`, "app.opened", t));
    expect(run(autumn, [berlin]).unlocks).toHaveLength(1);
    expect(run(autumn, [streak()]).unlocks).toEqual([]);
  });

  it("counts local days at the extremes: Pacific/Kiritimati (UTC+14) and Etc/GMT+12 (UTC-12)", () => {
    // Kiritimati: Apr 13 00:00, Apr 14 23:59, Apr 15 00:00 local (Apr 12, 14, 14 in UTC)
    const kiri = ["2026-04-12T10:00:00Z", "2026-04-14T09:59:00Z", "2026-04-14T10:00:00Z"].map((t, i) => ev(`k${i}`, "app.opened", t));
    expect(run(kiri, [streak({ timezone: "Pacific/Kiritimati" })]).unlocks).toHaveLength(1);
    expect(run(kiri, [streak()]).unlocks).toEqual([]);
    // one minute earlier, the first event is on Apr 12 local: no longer consecutive
    const kiriEarly = ["2026-04-12T09:59:00Z", "2026-04-14T09:59:00Z", "2026-04-14T10:00:00Z"].map((t, i) => ev(`k${i}`, "app.opened", t));
    expect(run(kiriEarly, [streak({ timezone: "Pacific/Kiritimati" })]).unlocks).toEqual([]);
    // UTC-12: Apr 13 00:00, Apr 14 23:59, Apr 15 00:00 local (Apr 13, 15, 15 in UTC)
    const gmt12 = ["2026-04-13T12:00:00Z", "2026-04-15T11:59:00Z", "2026-04-15T12:00:00Z"].map((t, i) => ev(`g${i}`, "app.opened", t));
    expect(run(gmt12, [streak({ timezone: "Etc/GMT+12" })]).unlocks).toHaveLength(1);
    expect(run(gmt12, [streak()]).unlocks).toEqual([]);
    const gmt12Early = ["2026-04-13T11:59:00Z", "2026-04-15T11:59:00Z", "2026-04-15T12:00:00Z"].map((t, i) => ev(`g${i}`, "app.opened", t));
    expect(run(gmt12Early, [streak({ timezone: "Etc/GMT+12" })]).unlocks).toEqual([]);
  });

  it("computes each event's day in the zone it carries when the user travels", () => {
    // Tokyo Apr 13 09:00, then Los Angeles Apr 14 23:00 and Apr 15 01:00: consecutive local days.
    const tokyo = { timezone: "Asia/Tokyo" };
    const la = { timezone: "America/Los_Angeles" };
    const times = ["2026-04-13T00:00:00Z", "2026-04-15T06:00:00Z", "2026-04-15T08:00:00Z"];
    const travelling = [ev("t1", "app.opened", times[0]!, { attributes: tokyo }), ev("t2", "app.opened", times[1]!, { attributes: la }), ev("t3", "app.opened", times[2]!, { attributes: la })];
    expect(run(travelling, [streak()]).unlocks).toHaveLength(1);
    // in any single one of these zones the days are not consecutive
    for (const timezone of ["UTC", "Asia/Tokyo", "America/Los_Angeles"]) {
      const fixed = times.map((t, i) => ev(`f${i}`, "app.opened", t, { attributes: { timezone } }));
      expect(run(fixed, [streak()]).unlocks).toEqual([]);
    }
  });
});

describe("streakStats and addPeriod", () => {
  it("merges periods into sorted disjoint runs", () => {
    expect(addPeriod([], 5)).toEqual([[5, 5]]);
    expect(addPeriod([[1, 3]], 2)).toEqual([[1, 3]]);
    expect(addPeriod([[1, 3], [5, 6]], 4)).toEqual([[1, 6]]);
    expect(addPeriod([[5, 6]], 3)).toEqual([[3, 3], [5, 6]]);
    expect(addPeriod([[5, 6]], 7)).toEqual([[5, 7]]);
    expect(addPeriod([[1, 1], [5, 6]], 9)).toEqual([[1, 1], [5, 6], [9, 9]]);
  });

  it("measures the current and best streak", () => {
    expect(streakStats([], {})).toEqual({ current: 0, best: 0, bestEnd: 0 });
    expect(streakStats([[1, 3], [5, 6]], {})).toEqual({ current: 2, best: 3, bestEnd: 3 });
    expect(streakStats([[1, 2], [4, 7]], {})).toEqual({ current: 4, best: 4, bestEnd: 7 });
  });

  it("bridges one missed period with grace, at most once every `per` periods", () => {
    const g = { grace: { per: 7 } };
    expect(streakStats([[1, 3], [5, 6]], g)).toEqual({ current: 5, best: 5, bestEnd: 6 });
    // two missed periods in a row are not bridged
    expect(streakStats([[1, 3], [6, 7]], g)).toMatchObject({ current: 2, best: 3 });
    // misses on 3 and 10 are 7 apart: both forgiven
    expect(streakStats([[1, 2], [4, 9], [11, 11]], g)).toMatchObject({ current: 9, best: 9 });
    // misses on 3 and 9 are within 7: no streak bridges both. The best is 1-8
    // (7 periods); the current one is 4-10, forgiving only 9 (6 periods).
    expect(streakStats([[1, 2], [4, 8], [10, 10]], g)).toMatchObject({ current: 6, best: 7 });
  });

  it("bridges missed periods with held freezes, earned every earn_every periods up to max", () => {
    expect(streakStats([[1, 3], [5, 6]], { freezes: { earn_every: 3, max: 1 } })).toMatchObject({ current: 5, best: 5 });
    expect(streakStats([[1, 2], [4, 6]], { freezes: { earn_every: 3, max: 1 } })).toMatchObject({ current: 3, best: 3 });
    // six days earn two freezes; max 1 keeps one, max 2 keeps both
    expect(streakStats([[1, 6], [9, 10]], { freezes: { earn_every: 3, max: 1 } })).toMatchObject({ current: 2, best: 6 });
    expect(streakStats([[1, 6], [9, 10]], { freezes: { earn_every: 3, max: 2 } })).toMatchObject({ current: 8, best: 8 });
    // freezes are spent: one missed day uses the only one held
    expect(streakStats([[1, 3], [5, 5], [7, 7]], { freezes: { earn_every: 3, max: 1 } })).toMatchObject({ current: 1, best: 4 });
  });
});

// ---------------------------------------------------------------- sequence

describe("sequence", () => {
  const abc = (extra: Record<string, unknown> = {}) =>
    rule({ id: "onboarding", type: "sequence", steps: [{ event: "step.a" }, { event: "step.b" }, { event: "step.c" }], ...extra });
  const at = (d: number, h = 0) => ms("2026-04-13T00:00:00Z") + d * DAY + h * HOUR;

  it("unlocks when the steps happen in order, other events in between, at the last step's time", () => {
    const set = compileRuleSet([abc()]);
    const r = run([ev("a", "step.a", at(0, 10)), ev("n1", "other.thing", at(0, 10.5)), ev("c0", "step.c", at(0, 10.75)), ev("b", "step.b", at(0, 11)), ev("a2", "step.a", at(0, 11.5)), ev("c", "step.c", at(0, 12))], set);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 0, 0, 1]);
    expect(r.unlocks[0]).toMatchObject({ achievement_id: "onboarding", tier: null, unlocked_at: iso(at(0, 12)), trigger_event_ids: ["a", "b", "c"] });
  });

  it("reports the step reached as progress", () => {
    const set = compileRuleSet([abc()]);
    const r = run([ev("a", "step.a", at(0, 10)), ev("b", "step.b", at(0, 11))], set);
    expect(progressOf(r.state, set, 0)).toEqual([
      { achievement_id: "onboarding", tier: null, rule_id: "onboarding", rule_version: 1, type: "sequence", current: 2, target: 3, step: 2, steps: 3 },
    ]);
  });

  it("does not unlock when the steps come in the wrong order", () => {
    expect(run([ev("b", "step.b", at(0, 1)), ev("a", "step.a", at(0, 2)), ev("c", "step.c", at(0, 3))], [abc()]).unlocks).toEqual([]);
    expect(run([ev("c", "step.c", at(0, 1)), ev("b", "step.b", at(0, 2)), ev("a", "step.a", at(0, 3))], [abc()]).unlocks).toEqual([]);
  });

  it("fails a too slow sequence under `within`, but a restart can still succeed", () => {
    const slow = run([ev("a1", "step.a", at(0)), ev("b1", "step.b", at(1)), ev("c1", "step.c", at(4))], [abc({ within: "3d" })]);
    expect(slow.unlocks).toEqual([]);
    const restart = run([ev("a2", "step.a", at(5)), ev("b2", "step.b", at(6)), ev("c2", "step.c", at(7))], [abc({ within: "3d" })], slow.state);
    expect(restart.unlocks).toHaveLength(1);
    expect(restart.unlocks[0]).toMatchObject({ unlocked_at: iso(at(7)), trigger_event_ids: ["a2", "b2", "c2"] });
    // without `within` the first attempt is good enough
    expect(run([ev("a1", "step.a", at(0)), ev("b1", "step.b", at(1)), ev("c1", "step.c", at(4))], [abc()]).unlocks).toHaveLength(1);
  });

  it("restarts from a second first step while an older attempt is pending", () => {
    // a1 b1 is too old for c at d4 00:00; a2 at d2 starts again
    const r = run(
      [ev("a1", "step.a", at(0)), ev("b1", "step.b", at(1)), ev("a2", "step.a", at(2)), ev("c1", "step.c", at(4)), ev("b2", "step.b", at(4, 12)), ev("c2", "step.c", at(4, 18))],
      [abc({ within: "3d" })],
    );
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 0, 0, 0, 1]);
    expect(r.unlocks[0]).toMatchObject({ unlocked_at: iso(at(4, 18)), trigger_event_ids: ["a2", "b2", "c2"] });
  });

  it("applies a step's own `within` to the time since the previous step", () => {
    const quick = rule({ id: "quick", type: "sequence", steps: [{ event: "cart.added" }, { event: "checkout.done", within: "1h" }] });
    const slow = run([ev("c1", "cart.added", at(0, 10)), ev("k1", "checkout.done", at(0, 11.5))], [quick]);
    expect(slow.unlocks).toEqual([]);
    const fast = run([ev("c2", "cart.added", at(0, 12)), ev("k2", "checkout.done", at(0, 12.5))], [quick], slow.state);
    expect(fast.unlocks).toHaveLength(1);
    expect(fast.unlocks[0]!.trigger_event_ids).toEqual(["c2", "k2"]);
  });

  it("never lets one event fill two steps", () => {
    const aab = rule({ id: "aab", type: "sequence", steps: [{ event: "step.a" }, { event: "step.a" }, { event: "step.b" }] });
    const one = run([ev("a1", "step.a", at(0, 1)), ev("b1", "step.b", at(0, 2))], [aab]);
    expect(one.unlocks).toEqual([]);
    const two = run([ev("a2", "step.a", at(0, 3)), ev("b2", "step.b", at(0, 4))], [aab], one.state);
    expect(two.unlocks).toHaveLength(1);
    expect(two.unlocks[0]!.trigger_event_ids).toEqual(["a1", "a2", "b2"]);
    const aa = rule({ id: "aa", type: "sequence", steps: [{ event: "step.a" }, { event: "step.a" }] });
    expect(run([ev("a1", "step.a", at(0, 1))], [aa]).unlocks).toEqual([]);
  });

  it("filters steps with where", () => {
    const r = rule({ id: "upgrade", type: "sequence", steps: [{ event: "plan.changed", where: { "payload.to": "pro" } }, { event: "plan.changed", where: { "payload.to": "team" } }] });
    const to = (id: string, plan: string, h: number) => ev(id, "plan.changed", at(0, h), { payload: { to: plan } });
    expect(run([to("t", "team", 1), to("p", "pro", 2)], [r]).unlocks).toEqual([]);
    expect(run([to("p", "pro", 1), to("f", "free", 2), to("t", "team", 3)], [r]).unlocks[0]!.trigger_event_ids).toEqual(["p", "t"]);
  });

  it("rejects a `within` on the first step and a step `within` longer than the whole", () => {
    expect(issuesOf({ id: "s", type: "sequence", steps: [{ event: "a.b", within: "1h" }, { event: "c.d" }] })).toEqual(["steps.0.within"]);
    expect(issuesOf({ id: "s", type: "sequence", within: "1h", steps: [{ event: "a.b" }, { event: "c.d", within: "2h" }] })).toEqual(["steps.1.within"]);
  });
});

// ---------------------------------------------------------------- composite

describe("composite", () => {
  const a = rule({ id: "a", type: "count", event: "x.a", target: 1 });
  const b = rule({ id: "b", type: "count", event: "x.b", target: 1 });
  const h = (hour: number) => ms("2026-04-13T00:00:00Z") + hour * HOUR;

  it("all: unlocks when the last of its achievements and event items is satisfied", () => {
    const combo = rule({ id: "combo", type: "composite", of: ["a", "b", { event: "x.c" }] });
    const r = run([ev("ea", "x.a", h(10)), ev("ec", "x.c", h(11)), ev("eb", "x.b", h(12))], [a, b, combo]);
    expect(r.each.map(keys)).toEqual([["a"], [], ["b", "combo"]]);
    expect(r.unlocks[2]).toMatchObject({ achievement_id: "combo", unlocked_at: iso(h(12)), trigger_event_ids: ["ea", "ec", "eb"] });
  });

  it("any and a number of items", () => {
    const any = rule({ id: "any", type: "composite", of: ["a", { event: "x.c" }], require: "any" });
    expect(run([ev("ec", "x.c", h(9))], [a, any]).unlocks.map((u) => u.achievement_id)).toEqual(["any"]);
    const two = rule({ id: "two", type: "composite", of: ["a", "b", { event: "x.c" }], require: 2 });
    const r = run([ev("ea", "x.a", h(10)), ev("ec", "x.c", h(11))], [a, b, two]);
    expect(r.each.map(keys)).toEqual([["a"], ["two"]]);
    expect(r.unlocks[1]).toMatchObject({ unlocked_at: iso(h(11)), trigger_event_ids: ["ea", "ec"] });
    expect(issuesOf({ id: "c", type: "composite", of: ["a", "b"], require: 3 })).toEqual(["require"]);
  });

  it("filters event items with where", () => {
    const c = rule({ id: "c", type: "composite", of: [{ event: "x.c", where: { "payload.n": { gte: 2 } } }, { event: "x.d" }] });
    const r = run([ev("c1", "x.c", h(1), { payload: { n: 1 } }), ev("d1", "x.d", h(2)), ev("c2", "x.c", h(3), { payload: { n: 2 } })], [c]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 1]);
    expect(r.unlocks[0]!.trigger_event_ids).toEqual(["d1", "c2"]);
  });

  it("within: every needed item inside one window", () => {
    const pair = rule({ id: "pair", type: "composite", of: [{ event: "x.c" }, { event: "x.d" }], within: "1h" });
    const r = run([ev("c1", "x.c", h(10)), ev("d1", "x.d", h(12)), ev("c2", "x.c", h(12.5))], [pair]);
    expect(r.each.map((u) => u.length)).toEqual([0, 0, 1]);
    expect(r.unlocks[0]).toMatchObject({ unlocked_at: iso(h(12.5)), trigger_event_ids: ["d1", "c2"] });
  });

  it("dates the unlock when the last needed item was satisfied, not at a late current event", () => {
    const pair = rule({ id: "pair", type: "composite", of: [{ event: "x.c" }, { event: "x.d" }], within: "1h" });
    // c at 10:00 and d at 12:00 are too far apart; a late c of 11:30 pairs with d, complete at 12:00
    const late = run([ev("c1", "x.c", h(10)), ev("d1", "x.d", h(12)), ev("c2", "x.c", h(11.5))], [pair]);
    expect(late.each.map((u) => u.length)).toEqual([0, 0, 1]);
    expect(late.unlocks[0]).toMatchObject({ unlocked_at: iso(h(12)), trigger_event_ids: ["c2", "d1"] });
    // an achievement item unlocked at 12:00, then an event item dated 09:00 arrives
    const withA = rule({ id: "with-a", type: "composite", of: ["a", { event: "x.c" }] });
    const r = run([ev("ea", "x.a", h(12)), ev("ec", "x.c", h(9))], [a, withA]);
    expect(r.each.map(keys)).toEqual([["a"], ["with-a"]]);
    expect(r.unlocks[1]).toMatchObject({ unlocked_at: iso(h(12)), trigger_event_ids: ["ec", "ea"] });
  });

  it("cascades composites of composites within one event", () => {
    const ab = rule({ id: "ab", type: "composite", of: ["a", "b"] });
    const abc = rule({ id: "abc", type: "composite", of: ["ab", { event: "x.c" }] });
    const top = rule({ id: "top", type: "composite", of: ["abc", "a"], require: "all" });
    const r = run([ev("ec", "x.c", h(9)), ev("ea", "x.a", h(10)), ev("eb", "x.b", h(11))], [top, abc, ab, a, b]);
    expect(r.each.map(keys)).toEqual([[], ["a"], ["b", "ab", "abc", "top"]]);
    for (const u of r.each[2]!) expect(u.unlocked_at).toBe(iso(h(11)));
  });
});

// ---------------------------------------------------------------- prerequisites

describe("prerequisites", () => {
  const basic = rule({ id: "basic", type: "count", event: "x.a", target: 1 });
  const adv = rule({ id: "adv", type: "count", event: "x.b", target: 2, prerequisites: ["basic"] });
  const h = (hour: number) => ms("2026-04-13T00:00:00Z") + hour * HOUR;

  it("does not unlock before its prerequisite, then unlocks in the same evaluation as it", () => {
    const r = run([ev("b1", "x.b", h(10)), ev("b2", "x.b", h(11)), ev("a1", "x.a", h(12))], [adv, basic]);
    expect(r.each.map(keys)).toEqual([[], [], ["basic", "adv"]]);
    // own criteria met at 11:00, prerequisite at 12:00
    expect(r.unlocks[1]).toMatchObject({ achievement_id: "adv", unlocked_at: iso(h(12)), trigger_event_ids: ["b1", "b2"] });
  });

  it("dates the unlock at its own criteria when the prerequisite came first", () => {
    const r = run([ev("a1", "x.a", h(9)), ev("b1", "x.b", h(10)), ev("b2", "x.b", h(11))], [adv, basic]);
    expect(r.each.map(keys)).toEqual([["basic"], [], ["adv"]]);
    expect(r.unlocks[1]!.unlocked_at).toBe(iso(h(11)));
  });

  it("waits for a named tier", () => {
    const lessons = rule({ id: "lessons", type: "count", event: "x.a", tiers: [{ name: "bronze", target: 1 }, { name: "silver", target: 2 }] });
    const pro = rule({ id: "pro", type: "count", event: "x.b", target: 1, prerequisites: ["lessons:silver"] });
    const r = run([ev("a1", "x.a", h(1)), ev("b1", "x.b", h(2)), ev("a2", "x.a", h(3))], [lessons, pro]);
    expect(r.each.map(keys)).toEqual([["lessons:bronze"], [], ["lessons:silver", "pro"]]);
  });
});

// ---------------------------------------------------------------- shared features

describe("hidden, segment, availability, repeatable, reward", () => {
  const h = (hour: number) => ms("2026-04-13T00:00:00Z") + hour * HOUR;

  it("hidden: unlocks as usual but progressOf never lists it", () => {
    const visible = rule({ id: "visible", type: "count", event: "a.b", target: 2 });
    const secret = rule({ id: "secret", type: "count", event: "a.b", target: 2, hidden: true });
    const set = compileRuleSet([visible, secret]);
    const one = run([ev("e1", "a.b", h(1))], set);
    expect(progressOf(one.state, set, h(1)).map((p) => p.achievement_id)).toEqual(["visible"]);
    const two = run([ev("e2", "a.b", h(2))], set, one.state);
    expect(two.unlocks.map((u) => u.achievement_id).sort()).toEqual(["secret", "visible"]);
    expect(progressOf(two.state, set, h(2))).toEqual([]);
  });

  it("segment: only events whose attributes match count", () => {
    const pro = rule({ id: "pro-user", type: "count", event: "a.b", target: 2, segment: { plan: ["pro", "team"] } });
    const r = run(
      [
        ev("free", "a.b", h(1), { attributes: { plan: "free" } }),
        ev("none", "a.b", h(2)),
        ev("p", "a.b", h(3), { attributes: { plan: "pro" } }),
        ev("other", "a.b", h(4), { attributes: { region: "eu" } }),
        ev("t", "a.b", h(5), { attributes: { plan: "team" } }),
      ],
      [pro],
    );
    expect(r.changed).toEqual([false, false, true, false, true]);
    expect(r.unlocks).toHaveLength(1);
    expect(r.unlocks[0]).toMatchObject({ unlocked_at: iso(h(5)), trigger_event_ids: ["p", "t"] });
    const scalar = rule({ id: "eu", type: "count", event: "a.b", target: 1, segment: { region: "eu", level: 3 } });
    expect(run([ev("x", "a.b", h(1), { attributes: { region: "eu", level: "3" } })], [scalar]).unlocks).toEqual([]);
    expect(run([ev("y", "a.b", h(1), { attributes: { region: "eu", level: 3 } })], [scalar]).unlocks).toHaveLength(1);
  });

  it("availability: starts_at is inclusive, ends_at exclusive, on event time", () => {
    const april = rule({ id: "april", type: "count", event: "a.b", target: 2, starts_at: "2026-04-01T00:00:00Z", ends_at: "2026-05-01T00:00:00Z" });
    const r = run(
      [
        ev("before", "a.b", "2026-03-31T23:59:59.999Z"),
        ev("first", "a.b", "2026-04-01T00:00:00Z"),
        ev("after", "a.b", "2026-05-01T00:00:00Z"),
        ev("last", "a.b", "2026-04-30T23:59:59.999Z"),
      ],
      [april],
    );
    expect(r.changed).toEqual([false, true, false, true]);
    expect(r.unlocks).toHaveLength(1);
    expect(r.unlocks[0]).toMatchObject({ unlocked_at: "2026-04-30T23:59:59.999Z", trigger_event_ids: ["first", "last"] });
    expect(issuesOf({ id: "x", type: "count", event: "a.b", target: 1, starts_at: "2026-05-01T00:00:00Z", ends_at: "2026-04-01T00:00:00Z" })).toEqual(["ends_at"]);
  });

  it("repeatable: unlocks again each day with its own id, occurrence and period, never twice a day", () => {
    const daily = rule({ id: "daily", type: "count", event: "a.b", target: 1, repeatable: { every: "day" } });
    const d13 = utcDay(2026, 4, 13);
    const r = run(
      [
        ev("m1", "a.b", "2026-04-13T10:00:00Z"),
        ev("m2", "a.b", "2026-04-13T20:00:00Z"),
        ev("t1", "a.b", "2026-04-14T08:00:00Z"),
        ev("t2", "a.b", "2026-04-14T23:59:59Z"),
        // 02:00Z on Apr 16 is still Apr 15 in New York
        ev("w1", "a.b", "2026-04-16T02:00:00Z", { attributes: { timezone: "America/New_York" } }),
        ev("w2", "a.b", "2026-04-16T03:00:00Z"),
      ],
      [daily],
    );
    expect(r.each.map((u) => u.length)).toEqual([1, 0, 1, 0, 1, 1]);
    expect(r.unlocks.map((u) => [u.occurrence, u.period, u.trigger_event_ids])).toEqual([
      [d13, "2026-04-13", ["m1"]],
      [d13 + 1, "2026-04-14", ["t1"]],
      [d13 + 2, "2026-04-15", ["w1"]],
      [d13 + 3, "2026-04-16", ["w2"]],
    ]);
    expect(r.unlocks.map((u) => u.unlock_id)).toEqual([0, 1, 2, 3].map((i) => unlockId("acme", "u1", "daily", null, d13 + i)));
    expect(r.unlocks[0]!.unlocked_at).toBe("2026-04-13T10:00:00.000Z");
  });

  it("repeatable: counts towards the target per period and shows the current period's progress", () => {
    const twice = rule({ id: "twice", type: "count", event: "a.b", target: 2, repeatable: { every: "week" } });
    const set = compileRuleSet([twice]);
    // Mon Apr 13 and Sun Apr 19 are week 16; Mon Apr 20 week 17
    const r = run([ev("a", "a.b", "2026-04-13T10:00:00Z"), ev("b", "a.b", "2026-04-19T10:00:00Z"), ev("c", "a.b", "2026-04-20T10:00:00Z")], set);
    expect(r.each.map((u) => u.map((x) => x.period))).toEqual([[], ["2026-W16"], []]);
    expect(progressOf(r.state, set, ms("2026-04-19T12:00:00Z"))).toEqual([]);
    expect(progressOf(r.state, set, ms("2026-04-21T12:00:00Z"))).toEqual([
      { achievement_id: "twice", tier: null, rule_id: "twice", rule_version: 1, type: "count", current: 1, target: 2, period: "2026-W17" },
    ]);
    const monthly = rule({ id: "monthly", type: "count", event: "a.b", target: 1, repeatable: { every: "month" } });
    expect(run([ev("m", "a.b", "2026-04-30T23:00:00Z")], [monthly]).unlocks[0]!.period).toBe("2026-04");
  });

  it("refuses repeatable streaks and composites and windowed repeatables", () => {
    expect(issuesOf({ id: "s", type: "streak", event: "a.b", period: "day", target: 2, repeatable: { every: "week" } })).toEqual(["repeatable"]);
    expect(issuesOf({ id: "c", type: "composite", of: [{ event: "a.b" }], repeatable: { every: "day" } })).toEqual(["repeatable"]);
    expect(issuesOf({ id: "w", type: "count", event: "a.b", target: 2, window: { calendar: "day" }, repeatable: { every: "day" } })).toEqual(["repeatable"]);
  });

  it("passes title and reward through to the unlock", () => {
    const reward = { points: 50, badge: { url: "https://example.com/b.png" }, tags: ["a", "b"] };
    const r = run([ev("e1", "a.b", h(1))], [rule({ id: "gift", type: "count", event: "a.b", target: 1, title: "Gift", reward })]);
    expect(r.unlocks[0]).toMatchObject({ title: "Gift", reward });
    expect(r.unlocks[0]!.reward).toEqual(reward);
  });
});

// ---------------------------------------------------------------- versions

describe("rule versions over time", () => {
  const MAY = "2026-05-01T00:00:00Z";
  const v1 = rule({ id: "x", version: 1, type: "count", event: "a.b", target: 2 });
  const v2 = rule({ id: "x", version: 2, type: "count", event: "a.b", target: 3, effective_from: MAY });

  it("evaluates each event under the version in force at its time", () => {
    const book = RuleBook.fromRules([v1, v2]);
    const acme = book.forTenant("acme");
    const april = run([ev("a1", "a.b", "2026-04-20T10:00:00Z"), ev("a2", "a.b", "2026-04-21T10:00:00Z")], acme);
    expect(april.unlocks).toHaveLength(1);
    expect(april.unlocks[0]!.rule_version).toBe(1);

    const across = run([ev("a1", "a.b", "2026-04-20T10:00:00Z", { user: "u2" }), ev("m1", "a.b", "2026-05-02T10:00:00Z", { user: "u2" }), ev("m2", "a.b", "2026-05-03T10:00:00Z", { user: "u2" })], acme);
    expect(across.each.map((u) => u.length)).toEqual([0, 0, 1]);
    expect(across.unlocks[0]).toMatchObject({ rule_version: 2, unlocked_at: "2026-05-03T10:00:00.000Z" });

    expect(run([ev("m1", "a.b", "2026-05-02T10:00:00Z", { user: "u3" }), ev("m2", "a.b", "2026-05-03T10:00:00Z", { user: "u3" })], acme).unlocks).toEqual([]);
    // the boundary belongs to the new version
    expect(acme.at(ms(MAY)).byId.get("x")?.version).toBe(2);
    expect(acme.at(ms(MAY) - 1).byId.get("x")?.version).toBe(1);
  });

  it("TenantRules: versionsAt, at and history", () => {
    const vs: RuleVersion[] = [
      { rule: v1, version: 1, effectiveFrom: Number.NEGATIVE_INFINITY },
      { rule: v2, version: 2, effectiveFrom: ms(MAY) },
    ];
    const t = new TenantRules([], vs);
    expect(t.versionsAt(ms("2026-04-01T00:00:00Z")).map((v) => v.version)).toEqual([1]);
    expect(t.versionsAt(ms("2026-06-01T00:00:00Z")).map((v) => v.version)).toEqual([2]);
    expect(t.at(ms("2026-06-01T00:00:00Z"))).toBe(t.at(ms("2026-07-01T00:00:00Z")));
    expect(t.at(ms("2026-06-01T00:00:00Z")).byId.get("x")?.levels).toEqual([{ tier: null, target: 3 }]);
    expect(t.history().map((h) => [h.scope, h.version.version])).toEqual([
      ["tenant", 1],
      ["tenant", 2],
    ]);
  });

  it("lets a tenant rule override a shared rule with the same id from its effective time", () => {
    const shared = rule({ id: "x", version: 1, type: "count", event: "a.b", target: 1 });
    const own = rule({ id: "x", version: 1, type: "count", event: "a.b", target: 3, effective_from: MAY });
    const book = RuleBook.fromRules([shared], new Map([["acme", [own]]]));
    expect(run([ev("e1", "a.b", "2026-04-20T10:00:00Z")], book.forTenant("acme")).unlocks).toHaveLength(1);
    const may = [1, 2, 3].map((d) => ev(`m${d}`, "a.b", `2026-05-0${d}T10:00:00Z`, { user: "u2" }));
    expect(run(may, book.forTenant("acme")).each.map((u) => u.length)).toEqual([0, 0, 1]);
    expect(run(may.slice(0, 1), book.forTenant("globex")).unlocks).toHaveLength(1);
    expect(book.forTenant("acme").versionsAt(ms(MAY)).map((v) => [v.rule.id, v.rule.type === "count" ? v.rule.target : undefined])).toEqual([["x", 3]]);
    expect(book.forTenant("acme").history().map((h) => h.scope)).toEqual(["shared", "tenant"]);
  });

  it("retires a rule from a version with enabled: false", () => {
    const off = rule({ id: "x", version: 2, type: "count", event: "a.b", target: 2, enabled: false, effective_from: MAY });
    const book = RuleBook.fromRules([rule({ id: "x", version: 1, type: "count", event: "a.b", target: 1 }), off]);
    const acme = book.forTenant("acme");
    expect(run([ev("e1", "a.b", "2026-04-20T10:00:00Z")], acme).unlocks).toHaveLength(1);
    const after = run([ev("e2", "a.b", "2026-05-02T10:00:00Z", { user: "u2" })], acme);
    expect(after.unlocks).toEqual([]);
    expect(after.changed).toEqual([false]);
    expect(acme.at(ms("2026-05-02T00:00:00Z")).byId.has("x")).toBe(false);
    expect(acme.at(ms("2026-04-02T00:00:00Z")).byId.has("x")).toBe(true);
  });

  it("ignores state of another rule type when a version changes the type", () => {
    const count = rule({ id: "x", version: 1, type: "count", event: "a.b", target: 5 });
    const sum = rule({ id: "x", version: 2, type: "threshold", event: "a.b", field: "payload.v", aggregate: "sum", target: 3, effective_from: MAY });
    const book = RuleBook.fromRules([count, sum]);
    const r = run([ev("c1", "a.b", "2026-04-20T10:00:00Z"), ev("c2", "a.b", "2026-04-21T10:00:00Z"), ev("s1", "a.b", "2026-05-02T10:00:00Z", { payload: { v: 2 } })], book.forTenant("acme"));
    expect(r.unlocks).toEqual([]);
    expect(r.state.rules.x).toMatchObject({ k: "sum", v: 2 * SUM_SCALE });
    const more = run([ev("s2", "a.b", "2026-05-03T10:00:00Z", { payload: { v: 1 } })], book.forTenant("acme"), r.state);
    expect(more.unlocks[0]).toMatchObject({ rule_version: 2, trigger_event_ids: ["s1", "s2"] });
  });
});

// ---------------------------------------------------------------- validation

describe("cross-rule validation", () => {
  const base = rule({ id: "base", type: "count", event: "a.b", tiers: [{ name: "bronze", target: 1 }, { name: "silver", target: 2 }] });
  const plain = rule({ id: "plain", type: "count", event: "a.b", target: 1 });

  it("accepts a consistent set", () => {
    const ok = [base, plain, rule({ id: "c", type: "composite", of: ["base:silver", "plain", { event: "c.d" }] }), rule({ id: "p", type: "count", event: "a.b", target: 1, prerequisites: ["base:bronze"] })];
    expect(checkRuleSet(ok)).toEqual([]);
  });

  it("finds unknown prerequisites and composite items", () => {
    const issues = checkRuleSet([plain, rule({ id: "needs", type: "count", event: "a.b", target: 1, prerequisites: ["plain", "nope"] }), rule({ id: "c", type: "composite", of: [{ event: "a.b" }, "ghost"] })]);
    expect(issues).toEqual([
      { rule: "needs", path: "prerequisites.1", reason: expect.stringContaining("nope") },
      { rule: "c", path: "of.1", reason: expect.stringContaining("ghost") },
    ]);
  });

  it("finds unknown tiers and missing tier names", () => {
    const issues = checkRuleSet([base, plain, rule({ id: "gold", type: "count", event: "a.b", target: 1, prerequisites: ["base:gold"] }), rule({ id: "t", type: "composite", of: ["plain:bronze", "base"] })]);
    expect(issues.map((i) => [i.rule, i.path])).toEqual([
      ["gold", "prerequisites.0"],
      ["t", "of.0"],
      ["t", "of.1"],
    ]);
    expect(issues[0]!.reason).toContain("gold");
  });

  it("finds cycles through prerequisites and composites", () => {
    const viaPrereq = checkRuleSet([rule({ id: "a", type: "count", event: "a.b", target: 1, prerequisites: ["b"] }), rule({ id: "b", type: "count", event: "a.b", target: 1, prerequisites: ["a"] })]);
    expect(viaPrereq).toHaveLength(1);
    expect(viaPrereq[0]!.reason).toMatch(/cycle/);
    const viaComposite = checkRuleSet([
      rule({ id: "c1", type: "composite", of: ["c2", { event: "a.b" }] }),
      rule({ id: "c2", type: "composite", of: ["c3"] }),
      rule({ id: "c3", type: "count", event: "a.b", target: 1, prerequisites: ["c1"] }),
    ]);
    expect(viaComposite).toHaveLength(1);
    expect(viaComposite[0]!.reason).toMatch(/cycle/);
    expect(viaComposite[0]!.reason).toContain("c1");
    const self = checkRuleSet([rule({ id: "me", type: "count", event: "a.b", target: 1, prerequisites: ["me"] })]);
    expect(self.map((i) => [i.rule, i.path])).toEqual([["me", "prerequisites.0"]]);
  });

  it("refuses references to repeatable achievements", () => {
    const daily = rule({ id: "daily", type: "count", event: "a.b", target: 1, repeatable: { every: "day" } });
    const issues = checkRuleSet([daily, rule({ id: "c", type: "composite", of: ["daily"] }), rule({ id: "p", type: "count", event: "a.b", target: 1, prerequisites: ["daily"] })]);
    expect(issues.map((i) => [i.rule, i.path])).toEqual([
      ["c", "of.0"],
      ["p", "prerequisites.0"],
    ]);
    for (const i of issues) expect(i.reason).toMatch(/repeatable/);
  });

  describe("loadRules", () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "achd-kinds-"));
    });
    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    function problemsOf(path: string): RulesError["problems"] {
      try {
        loadRules(path);
      } catch (err) {
        expect(err).toBeInstanceOf(RulesError);
        return (err as RulesError).problems;
      }
      throw new Error("expected loadRules to throw");
    }

    it("reports unknown references, unknown tiers and repeatable references naming file, rule and path", () => {
      const d = join(dir, "refs");
      mkdirSync(d);
      const file = join(d, "shared.yaml");
      writeFileSync(
        file,
        [
          "rules:",
          "  - { id: base, type: count, event: a.b, tiers: [ { name: bronze, target: 1 }, { name: silver, target: 2 } ] }",
          "  - { id: daily, type: count, event: a.b, target: 1, repeatable: { every: day } }",
          "  - { id: needs-missing, type: count, event: a.b, target: 1, prerequisites: [nope] }",
          "  - { id: needs-gold, type: count, event: a.b, target: 1, prerequisites: ['base:gold'] }",
          "  - { id: needs-daily, type: composite, of: [daily, { event: a.b }] }",
          "",
        ].join("\n"),
      );
      const problems = problemsOf(d);
      expect(problems.map((p) => [p.file, p.rule, p.path])).toEqual([
        [file, "needs-missing", "prerequisites.0"],
        [file, "needs-gold", "prerequisites.0"],
        [file, "needs-daily", "of.0"],
      ]);
      expect(problems[0]!.reason).toContain("nope");
      expect(problems[1]!.reason).toContain("gold");
      expect(problems[2]!.reason).toMatch(/repeatable/);
      expect(() => loadRules(d)).toThrow(/rule needs-gold at prerequisites\.0/);
    });

    it("reports a dependency cycle in a tenant's file", () => {
      const d = join(dir, "cycle");
      mkdirSync(d);
      writeFileSync(join(d, "shared.yaml"), "rules:\n  - { id: base, type: count, event: a.b, target: 1 }\n");
      const acme = join(d, "acme.yaml");
      writeFileSync(acme, ["tenant: acme", "rules:", "  - { id: loop-a, type: count, event: a.b, target: 1, prerequisites: [loop-b, base] }", "  - { id: loop-b, type: composite, of: [loop-a] }", ""].join("\n"));
      const problems = problemsOf(d);
      expect(problems).toHaveLength(1);
      expect(problems[0]!.file).toBe(acme);
      expect(["loop-a", "loop-b"]).toContain(problems[0]!.rule);
      expect(problems[0]!.reason).toMatch(/cycle/);
    });
  });
});

// ---------------------------------------------------------------- properties

/**
 * Order and duplicates: the same distinct events in any order, with
 * duplicates (same event_id, new stream sequence) anywhere, give the same
 * set of unlocks as the events once in time order.
 */
describe("order- and duplicate-insensitivity", () => {
  const BASE = ms("2026-04-13T00:00:00Z");
  type Gen = { type: string; day: number; minute: number; payload: Record<string, unknown>; tz?: string };
  const RUNS = { numRuns: 100 };

  function toEvents(gen: readonly Gen[]): ValidEvent[] {
    return gen.map((g, i) => ev(`e${i}`, g.type, BASE + g.day * DAY + g.minute * MIN, { payload: g.payload, ...(g.tz ? { attributes: { timezone: g.tz } } : {}) }));
  }

  /** Deliveries: a permutation, with copies of events inserted at arbitrary positions; applied in batches. */
  const delivery = (n: number) =>
    fc.record({
      order: fc.shuffledSubarray(
        Array.from({ length: n }, (_, i) => i),
        { minLength: n, maxLength: n },
      ),
      dups: fc.array(fc.record({ pick: fc.nat(), at: fc.nat() }), { maxLength: 10 }),
      batch: fc.integer({ min: 1, max: 6 }),
    });

  function applyAll(events: readonly ValidEvent[], source: RuleSource, batch: number): UserState {
    const items: SeqEvent[] = events.map((e, i) => ({ seq: i + 1, ev: e }));
    let s = emptyUserState();
    for (let i = 0; i < items.length; i += batch) {
      const r = applyEvents(s, items.slice(i, i + batch), source, 10_000);
      expect(r.failed).toEqual([]);
      s = r.state;
    }
    return s;
  }

  function both(rules: Rule[], gen: readonly Gen[], d: { order: number[]; dups: { pick: number; at: number }[]; batch: number }) {
    const set = compileRuleSet(rules);
    const events = toEvents(gen);
    const inTime = events.map((e, i) => ({ e, i })).sort((x, y) => x.e.occurredAt - y.e.occurredAt || x.i - y.i).map((x) => x.e);
    const reference = applyAll(inTime, set, Math.max(1, inTime.length));
    const stream = d.order.map((i) => events[i]!);
    if (events.length > 0) for (const dup of d.dups) stream.splice(dup.at % (stream.length + 1), 0, events[dup.pick % events.length]!);
    const permuted = applyAll(stream, set, d.batch);
    return { reference, permuted, set };
  }

  function unlockIds(s: UserState): string[] {
    return s.outbox.map((u) => u.unlock_id).sort();
  }

  /** Each rule's measure; exact while the rule has levels left, capped at its top target once all are unlocked (it then stops changing). */
  function measures(s: EvalState, rules: readonly Rule[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const r of rules) {
      if (r.type !== "count" && r.type !== "threshold" && r.type !== "streak") continue;
      const top = r.tiers ? r.tiers[r.tiers.length - 1]!.target : r.target!;
      const done = r.tiers ? r.tiers.every((t) => s.unlocked[`${r.id}:${t.name}`]) : s.unlocked[r.id] !== undefined;
      const st = s.rules[r.id];
      if (r.type === "count") out[r.id] = (st as CountState | undefined)?.n ?? 0;
      else if (r.type === "streak") {
        const runs = (st as StreakState | undefined)?.runs ?? [];
        out[r.id] = done ? Math.min(streakStats(runs, r).best, top) : runs;
      } else {
        const t = st as ThresholdState | undefined;
        const m = !t ? 0 : t.k === "sum" ? Number(t.v) / SUM_SCALE : t.k === "max" ? t.v : t.vals.length;
        out[r.id] = done ? Math.min(m, top) : t?.k === "distinct" ? t.vals : m;
      }
    }
    return out;
  }

  /** Tiers of one achievement appear in ladder order in the output. */
  function expectTierOrder(s: UserState, rules: readonly Rule[]): void {
    for (const r of rules) {
      if ((r.type !== "count" && r.type !== "threshold" && r.type !== "streak") || !r.tiers) continue;
      const names = r.tiers.map((t) => t.name);
      const seen = s.outbox.filter((u) => u.achievement_id === r.id).map((u) => names.indexOf(u.tier ?? ""));
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
      expect(seen).toEqual(names.slice(0, seen.length).map((_, i) => i));
    }
  }

  function expectSame(reference: UserState, permuted: UserState, rules: readonly Rule[]): void {
    expect(unlockIds(permuted)).toEqual(unlockIds(reference));
    expect(new Set(unlockIds(permuted)).size).toBe(permuted.outbox.length);
    expect(Object.keys(permuted.eval.unlocked).sort()).toEqual(Object.keys(reference.eval.unlocked).sort());
    expect(measures(permuted.eval, rules)).toEqual(measures(reference.eval, rules));
    expectTierOrder(reference, rules);
    expectTierOrder(permuted, rules);
  }

  const ladder = (max: number) =>
    fc.oneof(
      fc.integer({ min: 1, max }).map((target) => ({ target })),
      fc.uniqueArray(fc.integer({ min: 1, max }), { minLength: 1, maxLength: 3 }).map((ts) => ({ tiers: [...ts].sort((a, b) => a - b).map((target, i) => ({ name: `t${i}`, target })) })),
    );

  const scenario = <R>(rulesArb: fc.Arbitrary<R>, eventArb: fc.Arbitrary<Gen>, maxEvents = 20) =>
    fc.record({ rules: rulesArb, events: fc.array(eventArb, { maxLength: maxEvents }) }).chain(({ rules, events }) => fc.record({ rules: fc.constant(rules), events: fc.constant(events), d: delivery(events.length) }));

  it("count (with tiers and filters)", () => {
    const rulesArb = fc.array(fc.record({ types: fc.subarray(["a.x", "a.y"], { minLength: 1 }), ladder: ladder(6), min: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }) }), { minLength: 1, maxLength: 3 });
    const eventArb = fc.record({ type: fc.constantFrom("a.x", "a.y", "a.z"), day: fc.integer({ min: 0, max: 5 }), minute: fc.integer({ min: 0, max: 1439 }), payload: fc.record({ k: fc.integer({ min: 0, max: 3 }) }) });
    fc.assert(
      fc.property(scenario(rulesArb, eventArb), ({ rules, events, d }) => {
        const rs = rules.map((r, i) => rule({ id: `c${i}`, type: "count", event: r.types, ...r.ladder, ...(r.min === undefined ? {} : { where: { "payload.k": { gte: r.min } } }) }));
        const { reference, permuted } = both(rs, events, d);
        expectSame(reference, permuted, rs);
      }),
      RUNS,
    );
  });

  it("threshold (sum, max, value, distinct; non-numeric values mixed in)", () => {
    const rulesArb = fc.array(fc.record({ aggregate: fc.constantFrom("sum", "max", "value", "distinct"), ladder: ladder(12) }), { minLength: 1, maxLength: 3 });
    const value = fc.oneof(
      fc.integer({ min: 0, max: 500 }).map((c) => c / 100),
      fc.integer({ min: 0, max: 6 }),
      fc.constantFrom("c1", "c2", "c3", "5", null, true),
    );
    const eventArb = fc.record({ type: fc.constant("buy.x"), day: fc.integer({ min: 0, max: 5 }), minute: fc.integer({ min: 0, max: 1439 }), payload: fc.record({ v: value }) });
    fc.assert(
      fc.property(scenario(rulesArb, eventArb), ({ rules, events, d }) => {
        const rs = rules.map((r, i) => rule({ id: `t${i}`, type: "threshold", event: "buy.x", field: "payload.v", aggregate: r.aggregate, ...r.ladder }));
        const { reference, permuted } = both(rs, events, d);
        expectSame(reference, permuted, rs);
      }),
      RUNS,
    );
  });

  it("streak (day, min_per_period 1 or 2, events in several zones)", () => {
    const rulesArb = fc.array(fc.record({ ladder: ladder(5), min: fc.integer({ min: 1, max: 2 }) }), { minLength: 1, maxLength: 3 });
    const eventArb = fc.record({
      type: fc.constant("app.opened"),
      day: fc.integer({ min: 0, max: 6 }),
      minute: fc.integer({ min: 0, max: 1439 }),
      payload: fc.constant({}),
      tz: fc.constantFrom(undefined, "America/Los_Angeles", "Asia/Tokyo"),
    }) as fc.Arbitrary<Gen>;
    fc.assert(
      fc.property(scenario(rulesArb, eventArb, 24), ({ rules, events, d }) => {
        const rs = rules.map((r, i) =>
          rule({
            id: `s${i}`,
            type: "streak",
            event: "app.opened",
            period: "day",
            min_per_period: r.min,
            ...r.ladder,
          }),
        );
        const { reference, permuted } = both(rs, events, d);
        expectSame(reference, permuted, rs);
      }),
      RUNS,
    );
  });

  it("composite (achievement and event items, nested, no within)", () => {
    const item = fc.constantFrom<unknown>("a", "b", "a:t1", { event: "x.c" }, { event: "x.d", where: { "payload.v": { gte: 3 } } });
    const rulesArb = fc.record({
      items: fc.uniqueArray(item, { minLength: 1, maxLength: 5, selector: (x) => JSON.stringify(x) }),
      require: fc.constantFrom<unknown>("all", "any", 2),
      nested: fc.boolean(),
      bTarget: fc.integer({ min: 1, max: 10 }),
    });
    const eventArb = fc.record({ type: fc.constantFrom("x.a", "x.b", "x.c", "x.d"), day: fc.integer({ min: 0, max: 5 }), minute: fc.integer({ min: 0, max: 1439 }), payload: fc.record({ v: fc.integer({ min: 0, max: 5 }) }) });
    fc.assert(
      fc.property(scenario(rulesArb, eventArb), ({ rules: g, events, d }) => {
        // "a" has tiers, so it is named with one
        const items = [...new Set(g.items.map((x) => JSON.stringify(x === "a" ? "a:t2" : x)))].map((x) => JSON.parse(x) as unknown);
        const need = g.require === 2 && items.length < 2 ? "all" : g.require;
        const rs = [
          rule({ id: "a", type: "count", event: "x.a", tiers: [{ name: "t1", target: 1 }, { name: "t2", target: 2 }] }),
          rule({ id: "b", type: "threshold", event: "x.b", field: "payload.v", aggregate: "sum", target: g.bTarget }),
          rule({ id: "combo", type: "composite", of: items, require: need }),
          ...(g.nested ? [rule({ id: "top", type: "composite", of: ["combo", { event: "x.c" }], require: "all" })] : []),
        ];
        expect(checkRuleSet(rs)).toEqual([]);
        const { reference, permuted } = both(rs, events, d);
        expectSame(reference, permuted, rs);
      }),
      RUNS,
    );
  });

  it("repeatable rules never emit the same unlock id twice", () => {
    const rulesArb = fc.record({ every: fc.constantFrom("day", "week"), ladder: ladder(3) });
    const eventArb = fc.record({
      type: fc.constant("a.b"),
      day: fc.integer({ min: 0, max: 5 }),
      minute: fc.integer({ min: 0, max: 1439 }),
      payload: fc.constant({}),
      tz: fc.constantFrom(undefined, "America/Los_Angeles", "Asia/Tokyo"),
    }) as fc.Arbitrary<Gen>;
    fc.assert(
      fc.property(scenario(rulesArb, eventArb, 25), ({ rules: g, events, d }) => {
        const rs = [rule({ id: "rep", type: "count", event: "a.b", repeatable: { every: g.every }, ...g.ladder })];
        const { reference, permuted } = both(rs, events, d);
        for (const s of [reference, permuted]) {
          const ids = s.outbox.map((u) => u.unlock_id);
          expect(new Set(ids).size).toBe(ids.length);
          // one unlock per (tier, period) at most
          const slots = s.outbox.map((u) => `${u.tier}#${u.occurrence}`);
          expect(new Set(slots).size).toBe(slots.length);
        }
        expect(unlockIds(permuted)).toEqual(unlockIds(reference));
        expectTierOrderPerPeriod(permuted, rs[0]!);
      }),
      RUNS,
    );
  });

  function expectTierOrderPerPeriod(s: UserState, r: Rule): void {
    if (r.type !== "count" || !r.tiers) return;
    const names = r.tiers.map((t) => t.name);
    const byOcc = new Map<number, number[]>();
    for (const u of s.outbox) byOcc.set(u.occurrence, [...(byOcc.get(u.occurrence) ?? []), names.indexOf(u.tier ?? "")]);
    for (const seen of byOcc.values()) expect(seen).toEqual(seen.map((_, i) => i));
  }
});

// ---------------------------------------------------------------- regressions found in review

describe("regressions", () => {
  it("a late event does not move an unlock earlier than the events that earned it", () => {
    const basic = rule({ id: "basic", type: "count", event: "x.a", target: 1 });
    const adv = rule({ id: "adv", type: "count", event: "x.b", target: 2, prerequisites: ["basic"] });
    const r = run([ev("b1", "x.b", "2026-04-13T10:00:00Z"), ev("b2", "x.b", "2026-04-13T11:00:00Z"), ev("a0", "x.a", "2026-04-13T09:00:00Z")], [basic, adv]);
    expect(r.unlocks.find((u) => u.achievement_id === "adv")?.unlocked_at).toBe(iso("2026-04-13T11:00:00Z"));
    // Without prerequisites: the count was met by the later of the two events.
    const two = rule({ id: "two", type: "count", event: "x.b", target: 2 });
    const late = run([ev("b2", "x.b", "2026-04-13T11:00:00Z"), ev("b1", "x.b", "2026-04-13T10:00:00Z")], [two]);
    expect(late.unlocks[0]?.unlocked_at).toBe(iso("2026-04-13T11:00:00Z"));
  });

  it("a streak with grace unlocks the same way whatever the arrival order", () => {
    const s = rule({ id: "g", type: "streak", event: "x.a", period: "day", target: 3, grace: { per: 3 } });
    const days = ["2026-04-13", "2026-04-15", "2026-04-17", "2026-04-18"].map((d, i) => ev(`d${i}`, "x.a", `${d}T12:00:00Z`));
    const inOrder = run(days, [s]).unlocks.map((u) => u.unlock_id);
    const shuffled = run([days[1]!, days[3]!, days[2]!, days[0]!], [s]).unlocks.map((u) => u.unlock_id);
    expect(shuffled).toEqual(inOrder);
    // 15, (16 forgiven), 17, 18 is a streak of 3 whether or not 13 is known.
    expect(inOrder).toHaveLength(1);
  });

  it("a streak with freezes unlocks the same way whatever the arrival order", () => {
    const s = rule({ id: "f", type: "streak", event: "x.a", period: "day", target: 6, freezes: { earn_every: 2, max: 1 } });
    const days = [3, 4, 5, 6, 8, 10, 11].map((d) => ev(`d${d}`, "x.a", `2026-04-${String(d).padStart(2, "0")}T12:00:00Z`));
    const inOrder = run(days, [s]).unlocks.map((u) => u.unlock_id);
    const lastFirst = run([...days.slice(1), days[0]!], [s]).unlocks.map((u) => u.unlock_id);
    expect(lastFirst).toEqual(inOrder);
  });

  it("refuses grace and freezes together", () => {
    expect(RuleSchema.safeParse({ id: "x", type: "streak", event: "x.a", period: "day", target: 3, grace: { per: 3 }, freezes: { earn_every: 2, max: 1 } }).success).toBe(false);
  });

  it("a repeatable rule never unlocks a forgotten period again", () => {
    const daily = rule({ id: "daily", type: "count", event: "x.a", target: 1, repeatable: { every: "day" } });
    const r = run([ev("a", "x.a", "2026-04-01T10:00:00Z"), ev("b", "x.a", "2026-04-20T10:00:00Z"), ev("c", "x.a", "2026-04-01T12:00:00Z")], [daily]);
    const ids = r.unlocks.map((u) => u.unlock_id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(2);
  });

  it("composite progress counts items towards the number required", () => {
    const a = rule({ id: "a", type: "count", event: "x.a", target: 1 });
    const b = rule({ id: "b", type: "count", event: "x.b", target: 1 });
    const c = rule({ id: "c", type: "composite", of: ["a", "b", { event: "x.c" }] });
    const set = compileRuleSet([a, b, c]);
    const r = run([ev("c1", "x.c", "2026-04-13T10:00:00Z")], set);
    expect(progressOf(r.state, set, 0).find((p) => p.achievement_id === "c")).toMatchObject({ current: 1, target: 3, step: 1, steps: 3 });
  });

  it("refuses fractional count and streak targets", () => {
    const count = RuleSchema.safeParse({ id: "x", type: "count", event: "x.a", target: 1.5 });
    expect(count.error?.issues).toEqual([expect.objectContaining({ path: ["target"], message: "a count target is a whole number" })]);
    const streak = RuleSchema.safeParse({ id: "x", type: "streak", event: "x.a", period: "day", tiers: [{ name: "a", target: 2.5 }] });
    expect(streak.error?.issues).toEqual([expect.objectContaining({ path: ["tiers", 0, "target"], message: "a streak target is a whole number" })]);
  });

  it("a sliding window's progress counts events exactly one window apart, as unlocking does", () => {
    const w = rule({ id: "w", type: "count", event: "x.a", target: 3, window: { sliding: "7d" } });
    const set = compileRuleSet([w]);
    const r = run([ev("a", "x.a", "2026-04-01T00:00:00Z"), ev("b", "x.a", "2026-04-08T00:00:00Z")], set);
    expect(progressOf(r.state, set, 0)[0]).toMatchObject({ current: 2, target: 3 });
  });

  it("a rule version's unlock is not dated before the version took effect", () => {
    const a = rule({ id: "a", type: "count", event: "x.a", target: 1 });
    const v1: RuleVersion = { rule: rule({ id: "c", type: "composite", of: ["a", { event: "x.c" }], require: "all" }), version: 1, effectiveFrom: ms("2026-05-01T00:00:00Z") };
    const t = new TenantRules([{ rule: a, version: 1, effectiveFrom: Number.NEGATIVE_INFINITY }, v1], []);
    const r = run([ev("a1", "x.a", "2026-04-10T00:00:00Z"), ev("c1", "x.c", "2026-05-05T00:00:00Z")], t);
    expect(r.unlocks.find((u) => u.achievement_id === "c")?.unlocked_at).toBe(iso("2026-05-05T00:00:00Z"));
  });
});

describe("streaks with grace or freezes are order-insensitive (property)", () => {
  const variants = [
    rule({ id: "g", type: "streak", event: "x.a", period: "day", tiers: [{ name: "t3", target: 3 }, { name: "t5", target: 5 }], grace: { per: 3 } }),
    rule({ id: "f", type: "streak", event: "x.a", period: "day", tiers: [{ name: "t3", target: 3 }, { name: "t6", target: 6 }], freezes: { earn_every: 2, max: 2 } }),
  ];
  for (const r of variants) {
    it(`${r.id}: any arrival order of the same days gives the same unlocks`, () => {
      fc.assert(
        fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 14 }), fc.infiniteStream(fc.nat()), (days, rnd) => {
          const events = days.map((d) => ev(`d${d}`, "x.a", Date.UTC(2026, 3, 1 + d, 12)));
          const sorted = [...events].sort((a, b) => a.occurredAt - b.occurredAt);
          const shuffled = [...events];
          const it = rnd[Symbol.iterator]();
          for (let i = shuffled.length - 1; i > 0; i--) {
            const j = it.next().value! % (i + 1);
            [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
          }
          const a = run(sorted, [r]).unlocks.map((u) => u.unlock_id).sort();
          const b = run(shuffled, [r]).unlocks.map((u) => u.unlock_id).sort();
          expect(b).toEqual(a);
        }),
        { numRuns: 200 },
      );
    });
  }
});

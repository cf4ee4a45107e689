import type { KV } from "@nats-io/kv";
import { describe, expect, it } from "vitest";
import { RuleRegistry } from "../../src/registry/mod.ts";
import {
  checkRuleFile,
  MAX_CONDITION_DEPTH,
  MAX_LIST,
  MAX_REWARD_BYTES,
  MAX_RULE_BYTES,
  MAX_TARGET,
  MAX_TIERS,
  RuleSchema,
  RulesError,
  StoredRuleSchema,
  type RuleProblem,
} from "../../src/rules/mod.ts";

const base = { id: "spender", type: "threshold", event: "purchase.placed", field: "payload.amount", aggregate: "sum", target: 100 };

/** The problems one rule gets in a file, as `achd rules validate` reports them. */
function fileProblems(rule: unknown): RuleProblem[] {
  const problems: RuleProblem[] = [];
  checkRuleFile("rules.yaml", { rules: [rule] }, problems);
  return problems;
}

/** The problems a PUT of one rule gets (validation happens before the bucket is touched). */
async function apiProblems(rule: Record<string, unknown>): Promise<RuleProblem[]> {
  const registry = new RuleRegistry({} as KV);
  try {
    await registry.put("acme", rule, Date.now());
  } catch (err) {
    if (err instanceof RulesError) return err.problems;
    throw err;
  }
  throw new Error("expected the rule to be refused");
}

/** Same problem on both paths, naming the rule and the path; returns the reason. */
async function refused(rule: Record<string, unknown>, path: string | RegExp): Promise<string> {
  const f = fileProblems(rule);
  const a = await apiProblems(rule);
  expect(f.length, JSON.stringify(f)).toBeGreaterThan(0);
  expect(a.map((p) => [p.rule, p.path, p.reason])).toEqual(f.map((p) => [p.rule, p.path, p.reason]));
  expect(f[0]!.rule).toBe(rule.id);
  expect(f[0]!.path).toMatch(path);
  return f[0]!.reason;
}

function nestedNot(levels: number): Record<string, unknown> {
  let c: Record<string, unknown> = { "payload.amount": { gt: 0 } };
  for (let i = 0; i < levels; i++) c = { not: c };
  return c;
}

describe("rule bounds, on files and on the API", () => {
  it("accepts an ordinary rule", () => {
    expect(fileProblems(base)).toEqual([]);
  });

  it("refuses a not nested 5,000 deep with a validation error, not a stack overflow", async () => {
    const reason = await refused({ ...base, where: nestedNot(5000) }, /^where\.not\.not/);
    expect(reason).toMatch(/nested deeper than 100 levels/);
  });

  it("refuses conditions nested deeper than MAX_CONDITION_DEPTH", async () => {
    expect(fileProblems({ ...base, where: nestedNot(MAX_CONDITION_DEPTH - 1) })).toEqual([]);
    const reason = await refused({ ...base, where: nestedNot(MAX_CONDITION_DEPTH) }, /^where(\.not){32}$/);
    expect(reason).toBe("conditions nest at most 32 deep (all, any and not inside each other)");
  });

  it("refuses more than MAX_TIERS tiers, once", async () => {
    const tiers = Array.from({ length: 10_000 }, (_, i) => ({ name: `t${i}`, target: i + 1 }));
    const { target: _t, ...rest } = base;
    expect(await refused({ ...rest, tiers }, "tiers")).toBe(`10000 tiers, at most ${MAX_TIERS}`);
    expect(fileProblems({ ...rest, tiers })).toHaveLength(1);
    expect(fileProblems({ ...rest, tiers: tiers.slice(0, MAX_TIERS) })).toEqual([]);
  });

  it("refuses a long in list", async () => {
    const list = Array.from({ length: MAX_LIST + 1 }, (_, i) => `v${i}`);
    expect(await refused({ ...base, where: { "payload.sku": { in: list } } }, "where.payload.sku.in")).toBe(`${MAX_LIST + 1} values, at most ${MAX_LIST}`);
    expect(fileProblems({ ...base, where: { "payload.sku": { in: list.slice(1) } } })).toEqual([]);
  });

  it("refuses an 889 KB in list (too many entries) before reading it", async () => {
    const list = Array.from({ length: 100_000 }, (_, i) => `sku-${i}`);
    expect(await refused({ ...base, where: { "payload.sku": { in: list } } }, "")).toMatch(/too large/);
  });

  it("refuses targets beyond MAX_TARGET and filter numbers it could never match", async () => {
    expect(await refused({ ...base, target: 1e308 }, "target")).toBe(`1e+308 is above the largest target, ${MAX_TARGET}`);
    expect(await refused({ ...base, where: { "payload.amount": { gt: 1e16 } } }, "where.payload.amount.gt")).toMatch(/beyond ±1000000000000000/);
    expect(fileProblems({ ...base, target: MAX_TARGET })).toEqual([]);
  });

  it("refuses non-finite filter literals (YAML .inf)", async () => {
    expect(await refused({ ...base, where: { "payload.amount": { gt: Infinity } } }, "where.payload.amount.gt")).toMatch(/finite number/);
    expect(await refused({ ...base, where: { "payload.amount": Number.NaN } }, "where.payload.amount")).toMatch(/finite number/);
  });

  it("refuses a 2 MB reward, and a large rule, by size", async () => {
    expect(await refused({ ...base, reward: { blob: "x".repeat(2_000_000) } }, "reward")).toMatch(new RegExp(`at most ${MAX_REWARD_BYTES}$`));
    const description = "d".repeat(1000);
    const of = Array.from({ length: 32 }, (_, i) => ({ event: Array.from({ length: 64 }, (_, j) => `type${i}.event-number-${j}-with-a-long-name`) }));
    expect(await refused({ id: "big", type: "composite", description, of }, "")).toMatch(new RegExp(`at most ${MAX_RULE_BYTES}: shorten`));
  });

  it("refuses endless durations and instants a Date cannot hold", async () => {
    expect(await refused({ id: "seq", type: "sequence", within: `${"9".repeat(400)}d`, steps: [{ event: "a.b" }, { event: "c.d" }] }, "within")).toMatch(/longest duration/);
    expect(await refused({ ...base, starts_at: 1e308 }, "starts_at")).toMatch(/not a timestamp/);
  });

  it("refuses __proto__ keys, which a schema would silently drop", async () => {
    const rule = JSON.parse('{"id":"seg","type":"count","event":"a.b","target":1,"segment":{"__proto__":"x"}}') as Record<string, unknown>;
    expect(await refused(rule, "segment.__proto__")).toBe("a key named __proto__ is not allowed in a rule");
  });

  it("reads stored versions back without the size bounds", () => {
    const { target: _t, ...rest } = base;
    const tiers = Array.from({ length: MAX_TIERS + 5 }, (_, i) => ({ name: `t${i}`, target: i + 1 }));
    expect(RuleSchema.safeParse({ ...rest, tiers }).success).toBe(false);
    expect(StoredRuleSchema.safeParse({ ...rest, tiers }).success).toBe(true);
  });
});

describe("rule ids", () => {
  it("refuses ids outside the id alphabet with a clear reason (prototype names with capitals or underscores among them)", () => {
    for (const id of ["__proto__", "toString", "hasOwnProperty", "valueOf"]) {
      const p = fileProblems({ ...base, id });
      expect(p.map((x) => [x.rule, x.path, x.reason])).toEqual([[id, "id", "must be 1-64 characters of a-z 0-9 _ - starting with a letter or digit"]]);
    }
  });

  it("accepts lower-case prototype names, which must then work (see the evaluator tests)", () => {
    for (const id of ["constructor", "tostring", "valueof", "hasownproperty", "isprototypeof"]) expect(fileProblems({ ...base, id })).toEqual([]);
  });
});

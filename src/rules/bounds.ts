/**
 * Size bounds of a rule, checked when a rule comes in (files, the API) so
 * that a rule stays small enough to store (NATS refuses messages over its
 * max_payload), to list, and to evaluate on every event. Versions already
 * stored are read back without them: a bound added later must not stop an
 * engine from loading what it accepted before.
 */
import { MAX_RULE_NUMBER } from "../events/mod.ts";
import { checkShape } from "../util/json.ts";

/** Largest rule, as stored (its validated form as JSON), in bytes. */
export const MAX_RULE_BYTES = 65_536;
/** Largest `reward`, as JSON, in bytes (it is copied into every unlock event). */
export const MAX_REWARD_BYTES = 8_192;
/** Most tiers of one rule. */
export const MAX_TIERS = 100;
/** Longest `in` / `nin` list of a filter, and list of allowed values of a segment attribute. */
export const MAX_LIST = 1_000;
/** Most event types one rule, step or item listens to. */
export const MAX_EVENT_TYPES = 64;
/** Most prerequisites of one rule. */
export const MAX_PREREQUISITES = 32;
/** Largest target: the largest number rules read from events ({@link MAX_RULE_NUMBER}). */
export const MAX_TARGET = MAX_RULE_NUMBER;
/** Deepest nesting of objects and lists in a rule as written (conditions alone nest at most 32 deep). */
export const MAX_RULE_DEPTH = 100;
/** Most object keys and list items in a rule as written (a rule is at most {@link MAX_RULE_BYTES} anyway). */
export const MAX_RULE_ENTRIES = 20_000;

/** One bound a rule exceeds: the path inside the rule and what to do. */
export type BoundIssue = { path: (string | number)[]; message: string };

/**
 * Checks a rule as written, before the schema reads it: nesting depth,
 * entry count and `__proto__` keys (which a schema copy silently drops,
 * so a `segment: { __proto__: … }` would vanish and match everyone).
 */
export function rawRuleIssue(raw: unknown): BoundIssue | undefined {
  // Before the schema, which checks each tier against the one before: thousands would mean thousands of issues.
  const tiers = (raw as { tiers?: unknown } | null)?.tiers;
  if (Array.isArray(tiers) && tiers.length > MAX_TIERS) return { path: ["tiers"], message: `${tiers.length} tiers, at most ${MAX_TIERS}` };
  const p = checkShape(raw, { maxDepth: MAX_RULE_DEPTH, maxEntries: MAX_RULE_ENTRIES });
  if (p.kind === "ok") return undefined;
  if (p.kind === "proto") return { path: p.path, message: "a key named __proto__ is not allowed in a rule" };
  // The first levels say where; a hundred more `not.not.…` would say nothing new.
  if (p.kind === "depth") return { path: p.path.slice(0, 8), message: `nested deeper than ${MAX_RULE_DEPTH} levels of objects and lists (conditions nest at most 32 deep)` };
  return { path: [], message: `too large: more than ${MAX_RULE_ENTRIES} keys and list items (a rule is at most ${MAX_RULE_BYTES} bytes as JSON)` };
}

function tooMany(path: (string | number)[], list: readonly unknown[] | undefined, max: number, what: string): BoundIssue[] {
  return list && list.length > max ? [{ path, message: `${list.length} ${what}, at most ${max}` }] : [];
}

function bigNumber(v: unknown): boolean {
  return typeof v === "number" && Math.abs(v) > MAX_RULE_NUMBER;
}

/** Numbers beyond ±MAX_RULE_NUMBER and over-long lists in a compiled-valid condition (its depth is already bounded). */
function conditionIssues(cond: Record<string, unknown>, at: (string | number)[], out: BoundIssue[]): void {
  for (const [key, value] of Object.entries(cond)) {
    const p = [...at, key];
    if (key === "all" || key === "any") (value as Record<string, unknown>[]).forEach((c, i) => conditionIssues(c, [...p, i], out));
    else if (key === "not") conditionIssues(value as Record<string, unknown>, p, out);
    else if (typeof value !== "object" || value === null) {
      if (bigNumber(value)) out.push({ path: p, message: numberMessage(value as number) });
    } else {
      for (const [op, arg] of Object.entries(value)) {
        const list = Array.isArray(arg) ? arg : [arg];
        out.push(...tooMany([...p, op], Array.isArray(arg) ? arg : undefined, MAX_LIST, "values"));
        if (list.some(bigNumber)) out.push({ path: [...p, op], message: numberMessage(list.find(bigNumber) as number) });
      }
    }
  }
}

function numberMessage(v: number): string {
  return `${v} is beyond ±${MAX_RULE_NUMBER}: rules read larger numbers in events as missing, so it could never match`;
}

/** JSON size in bytes of a value whose depth is bounded. */
function jsonBytes(v: unknown): number {
  return Buffer.byteLength(JSON.stringify(v) ?? "");
}

type Matcher = { event: string[]; where?: Record<string, unknown> | undefined };

/** The parts of a validated rule that have bounds (structural, so this file needs nothing from the schema). */
export type BoundedParts = {
  type: string;
  prerequisites: string[];
  segment?: Record<string, unknown> | undefined;
  event?: string[];
  where?: Record<string, unknown> | undefined;
  target?: number | undefined;
  tiers?: { target: number }[] | undefined;
  steps?: Matcher[];
  of?: (string | { achievement: string } | Matcher)[];
  reward?: Record<string, unknown> | undefined;
};

/** Every size bound a validated rule exceeds (none: an empty list). */
export function ruleBoundIssues(r: BoundedParts): BoundIssue[] {
  const out: BoundIssue[] = [];
  out.push(...tooMany(["prerequisites"], r.prerequisites, MAX_PREREQUISITES, "prerequisites"));
  for (const [attr, allowed] of Object.entries(r.segment ?? {})) {
    const list = Array.isArray(allowed) ? allowed : [allowed];
    out.push(...tooMany(["segment", attr], list, MAX_LIST, "values"));
    if (list.some(bigNumber)) out.push({ path: ["segment", attr], message: numberMessage(list.find(bigNumber) as number) });
  }
  if (r.event) {
    out.push(...tooMany(["event"], r.event, MAX_EVENT_TYPES, "event types"));
    if (r.target !== undefined && r.target > MAX_TARGET) out.push({ path: ["target"], message: `${r.target} is above the largest target, ${MAX_TARGET}` });
    r.tiers?.forEach((t, i) => {
      if (t.target > MAX_TARGET) out.push({ path: ["tiers", i, "target"], message: `${t.target} is above the largest target, ${MAX_TARGET}` });
    });
    if (r.where) conditionIssues(r.where, ["where"], out);
  }
  r.steps?.forEach((s, i) => {
    out.push(...tooMany(["steps", i, "event"], s.event, MAX_EVENT_TYPES, "event types"));
    if (s.where) conditionIssues(s.where, ["steps", i, "where"], out);
  });
  r.of?.forEach((item, i) => {
    if (typeof item !== "object" || !("event" in item)) return;
    out.push(...tooMany(["of", i, "event"], item.event, MAX_EVENT_TYPES, "event types"));
    if (item.where) conditionIssues(item.where, ["of", i, "where"], out);
  });
  if (r.reward !== undefined) {
    const shape = checkShape(r.reward, { maxDepth: 16, maxEntries: MAX_LIST });
    if (shape.kind === "proto") out.push({ path: ["reward", ...shape.path], message: "a key named __proto__ is not allowed in a reward" });
    else if (shape.kind !== "ok") out.push({ path: ["reward", ...shape.path], message: `a reward nests at most 16 levels and holds at most ${MAX_LIST} keys and list items` });
    else if (jsonBytes(r.reward) > MAX_REWARD_BYTES) out.push({ path: ["reward"], message: `is ${jsonBytes(r.reward)} bytes as JSON, at most ${MAX_REWARD_BYTES}` });
  }
  // The whole rule last, and only when its parts fit: its size then says something new.
  if (out.length === 0 && jsonBytes(r) > MAX_RULE_BYTES) out.push({ path: [], message: `the rule is ${jsonBytes(r)} bytes as JSON, at most ${MAX_RULE_BYTES}: shorten its lists or split it` });
  return out;
}

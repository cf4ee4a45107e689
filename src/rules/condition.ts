/**
 * Payload filters: a small, structured condition form that needs no parser.
 *
 * A condition is an object. Each key is either a field path
 * (`payload.course_id`, `attributes.plan`, `source`, `event_type`) mapped to a
 * literal (equality) or to an operator object (`eq ne gt gte lt lte in nin
 * exists`), or one of the combinators `all`, `any` (arrays of conditions) and
 * `not` (one condition). Several keys in one object must all hold.
 *
 *   { "payload.course_id": "course_2", "payload.duration_seconds": { "gte": 60 } }
 *   { "any": [ { "source": "web" }, { "attributes.plan": { "in": ["pro", "team"] } } ] }
 */

/** A compiled condition: a predicate over a field lookup. */
export type Predicate = (get: (path: string) => unknown) => boolean;

/** A condition that cannot compile, with the path inside the rule where it fails. */
export class ConditionError extends Error {
  override name = "ConditionError";
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Deepest nesting of conditions (`all`, `any`, `not` inside each other):
 * compiling and evaluating recurse once per level, so a rule nested
 * thousands deep is refused here instead of overflowing the stack.
 */
export const MAX_CONDITION_DEPTH = 32;

const OPS = new Set(["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "exists"]);
const ROOTS = new Set(["payload", "attributes", "source", "event_type", "business_key"]);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A literal a field can be compared with. Numbers must be finite: JSON cannot store Infinity (YAML's `.inf`). */
function isScalar(v: unknown): boolean {
  return v === null || typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v));
}

function compare(op: string, actual: unknown, expected: unknown): boolean {
  switch (op) {
    case "eq":
      return actual === expected;
    case "ne":
      return actual !== expected;
    case "in":
      return (expected as unknown[]).includes(actual);
    case "nin":
      return !(expected as unknown[]).includes(actual);
    case "exists":
      return (actual !== undefined) === expected;
  }
  // Ordering compares numbers with numbers and strings with strings only.
  if (typeof actual !== typeof expected || (typeof actual !== "number" && typeof actual !== "string")) return false;
  const a = actual as number | string;
  const b = expected as number | string;
  if (op === "gt") return a > b;
  if (op === "gte") return a >= b;
  if (op === "lt") return a < b;
  return a <= b;
}

function compileField(field: string, spec: unknown, at: string): Predicate {
  const root = field.split(".")[0]!;
  if (!ROOTS.has(root)) {
    throw new ConditionError(at, `unknown field ${field}: paths start with one of ${[...ROOTS].join(", ")}`);
  }
  if (!isPlainObject(spec)) {
    if (!isScalar(spec)) throw new ConditionError(at, `${field} must be compared with a string, a finite number, a boolean or null`);
    return (get) => get(field) === spec;
  }
  const tests: Predicate[] = [];
  for (const [op, expected] of Object.entries(spec)) {
    const p = `${at}.${op}`;
    if (!OPS.has(op)) throw new ConditionError(p, `unknown operator ${op}; use one of ${[...OPS].join(", ")}`);
    if ((op === "in" || op === "nin") && !(Array.isArray(expected) && expected.every(isScalar))) {
      throw new ConditionError(p, `${op} takes an array of strings, finite numbers, booleans or null`);
    }
    if (op === "exists" && typeof expected !== "boolean") throw new ConditionError(p, "exists takes true or false");
    if (["gt", "gte", "lt", "lte"].includes(op) && !(typeof expected === "string" || (typeof expected === "number" && Number.isFinite(expected)))) {
      throw new ConditionError(p, `${op} takes a finite number or a string`);
    }
    if ((op === "eq" || op === "ne") && !isScalar(expected)) throw new ConditionError(p, `${op} takes a string, a finite number, a boolean or null`);
    tests.push((get) => compare(op, get(field), expected));
  }
  if (tests.length === 0) throw new ConditionError(at, `no operator given for ${field}`);
  return (get) => tests.every((t) => t(get));
}

/**
 * Compiles a condition; throws {@link ConditionError} naming the path
 * (relative to `at`) of the first problem. `depth` is this condition's
 * level (1 for a `where`).
 */
export function compileCondition(cond: unknown, at = "where", depth = 1): Predicate {
  if (depth > MAX_CONDITION_DEPTH) throw new ConditionError(at, `conditions nest at most ${MAX_CONDITION_DEPTH} deep (all, any and not inside each other)`);
  if (!isPlainObject(cond)) throw new ConditionError(at, "a condition must be an object");
  const parts: Predicate[] = [];
  for (const [key, value] of Object.entries(cond)) {
    const p = `${at}.${key}`;
    if (key === "all" || key === "any") {
      if (!Array.isArray(value) || value.length === 0) throw new ConditionError(p, `${key} takes a non-empty array of conditions`);
      const subs = value.map((c, i) => compileCondition(c, `${p}.${i}`, depth + 1));
      parts.push(key === "all" ? (g) => subs.every((s) => s(g)) : (g) => subs.some((s) => s(g)));
    } else if (key === "not") {
      const sub = compileCondition(value, p, depth + 1);
      parts.push((g) => !sub(g));
    } else {
      parts.push(compileField(key, value, p));
    }
  }
  if (parts.length === 0) throw new ConditionError(at, "an empty condition matches nothing useful; remove it instead");
  return (get) => parts.every((t) => t(get));
}

/**
 * Bounds on the shape of parsed JSON (or YAML) values: how deep they nest,
 * how many entries they hold, and keys that JavaScript cannot keep as
 * ordinary data. The walk is iterative and stops at the first problem, so
 * a value nested 100,000 levels costs no more than one at the limit and
 * never overflows the stack.
 */

/** What {@link checkShape} refuses, and where (keys and list indices from the value's root). */
export type ShapeProblem =
  | { kind: "depth"; path: (string | number)[]; limit: number }
  | { kind: "entries"; path: (string | number)[]; limit: number }
  | { kind: "proto"; path: (string | number)[] };

/** Limits for {@link checkShape}. */
export type ShapeLimits = {
  /** Most levels of objects and lists; the value itself, when it is one, is level 1. */
  maxDepth: number;
  /** Most object keys and list items, counted together over the whole value. */
  maxEntries: number;
};

type Frame = { v: unknown; depth: number; key: string | number; up: Frame | undefined };

/** Only objects and lists are walked into (scalars cost nothing but their count). */
function isContainer(v: unknown): boolean {
  return typeof v === "object" && v !== null;
}

function pathOf(f: Frame | undefined): (string | number)[] {
  const out: (string | number)[] = [];
  for (let at = f; at?.up !== undefined; at = at.up) out.push(at.key);
  return out.reverse();
}

/**
 * The first problem with `value`'s shape, or `ok` with the number of keys
 * and list items it holds. A key named `__proto__` is a problem at any
 * depth: `JSON.parse` keeps it as an own key, but an assignment or a schema
 * copy turns it into the object's prototype (zod drops it), so two readers
 * of the same bytes would see different data.
 */
export function checkShape(value: unknown, limits: ShapeLimits): ShapeProblem | { kind: "ok"; entries: number } {
  const stack: Frame[] = [{ v: value, depth: 0, key: "", up: undefined }];
  let entries = 0;
  while (stack.length > 0) {
    const f = stack.pop()!;
    if (typeof f.v !== "object" || f.v === null) continue;
    const depth = f.depth + 1;
    if (depth > limits.maxDepth) return { kind: "depth", path: pathOf(f), limit: limits.maxDepth };
    if (Array.isArray(f.v)) {
      entries += f.v.length;
      if (entries > limits.maxEntries) return { kind: "entries", path: pathOf(f), limit: limits.maxEntries };
      for (let i = f.v.length - 1; i >= 0; i--) if (isContainer(f.v[i])) stack.push({ v: f.v[i], depth, key: i, up: f });
      continue;
    }
    const keys = Object.keys(f.v);
    entries += keys.length;
    if (entries > limits.maxEntries) return { kind: "entries", path: pathOf(f), limit: limits.maxEntries };
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i]!;
      if (k === "__proto__") return { kind: "proto", path: [...pathOf(f), k] };
      const v = (f.v as Record<string, unknown>)[k];
      if (isContainer(v)) stack.push({ v, depth, key: k, up: f });
    }
  }
  return { kind: "ok", entries };
}

/** A path for messages: `payload.items.3.name`, shortened in the middle when very long. */
export function showPath(path: readonly (string | number)[]): string {
  const parts = path.map((p) => (typeof p === "string" && p.length > 40 ? `${p.slice(0, 37)}...` : String(p)));
  if (parts.length <= 12) return parts.join(".") || "(root)";
  return [...parts.slice(0, 6), `…(${parts.length - 10} more)…`, ...parts.slice(-4)].join(".");
}

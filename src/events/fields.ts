import type { Event } from "./schema.ts";

/** Paths come from rules and configuration: few, and asked for on every event. */
const parts = new Map<string, readonly string[]>();

function split(path: string): readonly string[] {
  let p = parts.get(path);
  if (!p) {
    if (parts.size >= 4096) parts.clear();
    parts.set(path, (p = path.split(".")));
  }
  return p;
}

/**
 * The value at a dotted path of an event (`payload.course_id`,
 * `attributes.plan`, `source`), or undefined. Own properties only, so
 * `payload.constructor` never finds Object's.
 */
export function fieldAt(event: Event, path: string): unknown {
  let v: unknown = event as unknown;
  for (const p of split(path)) {
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, p)) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

/**
 * Largest magnitude of a number that rules read: 10^15. Sums stay exact
 * (they are kept in millionths, as integers) and no total or maximum can
 * become Infinity, which JSON cannot store.
 */
export const MAX_RULE_NUMBER = 1e15;

/**
 * The value at a path as rules see it: {@link fieldAt}, except that a
 * number outside ±{@link MAX_RULE_NUMBER} (or not finite: `1e400` in JSON
 * parses as Infinity) reads as missing. Every reader — filters, segments,
 * threshold fields — so treats it alike, in the workers, replay and the
 * simulator.
 */
export function ruleValue(event: Event, path: string): unknown {
  const v = fieldAt(event, path);
  return typeof v === "number" && !(Math.abs(v) <= MAX_RULE_NUMBER) ? undefined : v;
}

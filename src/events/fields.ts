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

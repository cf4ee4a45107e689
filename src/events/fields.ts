import type { Event } from "./schema.ts";

/**
 * The value at a dotted path of an event (`payload.course_id`,
 * `attributes.plan`, `source`), or undefined. Own properties only, so
 * `payload.constructor` never finds Object's.
 */
export function fieldAt(event: Event, path: string): unknown {
  let v: unknown = event as unknown;
  for (const p of path.split(".")) {
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, p)) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

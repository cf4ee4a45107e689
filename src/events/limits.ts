import { checkShape, showPath } from "../util/json.ts";

/**
 * Bounds every event is checked against, on every path (HTTP ingest, the
 * workers, replay, simulate). The config's `limits` section sets them;
 * these are its defaults.
 */
export type EventLimits = {
  /** Deepest nesting of objects and lists in `payload` and `attributes` (the object itself is level 1). */
  maxDepth: number;
  /** Most object keys and list items in `payload` and `attributes` together. */
  maxKeys: number;
  /** How far (ms) `occurred_at` may be ahead of the time the events stream stored the event. */
  futureSkew: number;
};

/** The defaults of {@link EventLimits} (the config's `limits` section). */
export const DEFAULT_EVENT_LIMITS: Readonly<EventLimits> = { maxDepth: 16, maxKeys: 2000, futureSkew: 86_400_000 };

/**
 * Earliest accepted `occurred_at`: 1970-01-01T00:00:00Z. Older events are
 * fine down to it; before it, epoch arithmetic (periods, windows) is not
 * something any producer means.
 */
export const EARLIEST_EVENT_TIME = 0;

/** One problem with an event, at a field path. */
export type Issue = { path: string; message: string };

/** The parts of an event whose shape is free-form (the rest is fixed by the schema). */
const FREE_FORM = ["payload", "attributes"] as const;

/**
 * Checks the free-form parts of a parsed body (before the schema copies
 * them): nesting depth, number of keys and list items, and `__proto__`
 * keys anywhere in the body. Returns the problem as an issue, with what
 * the `limits` are called in the config, or undefined.
 */
export function shapeIssue(body: unknown, limits: EventLimits): { issue: Issue; tooComplex: boolean } | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  // Fixed fields are strings the schema checks; only unknown keys need the `__proto__` check here.
  if (Object.hasOwn(body, "__proto__")) return { issue: { path: "__proto__", message: "a key named __proto__ is not allowed anywhere in an event; rename it" }, tooComplex: false };
  let entries = 0;
  for (const part of FREE_FORM) {
    const v = (body as Record<string, unknown>)[part];
    if (typeof v !== "object" || v === null) continue;
    const p = checkShape(v, { maxDepth: limits.maxDepth, maxEntries: limits.maxKeys - entries });
    if (p.kind === "ok") entries += p.entries;
    else {
      const path = showPath([part, ...p.path]);
      if (p.kind === "proto") return { issue: { path, message: "a key named __proto__ is not allowed anywhere in an event; rename it" }, tooComplex: false };
      if (p.kind === "depth") return { issue: { path, message: `nested deeper than limits.maxDepth (${limits.maxDepth} levels of objects and lists in ${part})` }, tooComplex: true };
      return { issue: { path, message: `payload and attributes hold more than limits.maxKeys (${limits.maxKeys}) keys and list items together` }, tooComplex: true };
    }
  }
  return undefined;
}

/** Human-readable duration for messages: `1d`, `36h`, `90s`, `250ms`. */
function showDuration(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/**
 * The horizon check: `occurred_at` may be at most `futureSkew` after the
 * time the event was stored (the stream's own timestamp, so a replay
 * years later decides exactly as the worker did). Undefined when it is
 * within.
 */
export function horizonIssue(occurredAt: number, storedAt: number, futureSkew: number): Issue | undefined {
  const latest = storedAt + futureSkew;
  if (occurredAt <= latest) return undefined;
  return {
    path: "occurred_at",
    message:
      `${new Date(occurredAt).toISOString()} is more than limits.futureSkew (${showDuration(futureSkew)}) after the event was stored ` +
      `(${new Date(storedAt).toISOString()}): it must be at most ${new Date(latest).toISOString()}; check the producer's clock`,
  };
}

import { createHash } from "node:crypto";
import { fieldAt, type ValidEvent } from "../events/mod.ts";

/** A business fingerprint: which events, which fields, and how close in time they must be to collapse. */
export type FingerprintSpec = { event: string[]; fields: string[]; within: number; round?: number | undefined };

/** At most this many fingerprints are kept per user (the oldest go first). */
export const MAX_FINGERPRINTS = 1000;

/** The time of an earlier report of the same action within the window, from a user's stored fingerprints. */
export function fingerprintMatch(fp: { key: string; within: number } | undefined, seen: Readonly<Record<string, number>> | undefined, time: number): number | undefined {
  if (!fp) return undefined;
  const t = seen?.[fp.key];
  return t !== undefined && Math.abs(t - time) <= fp.within ? t : undefined;
}

/**
 * The fingerprint of an event under the first spec that covers its type
 * (hash of spec, type, field values and, with `round`, the rounded event
 * time), with that spec's window; undefined when no spec covers it or a
 * field is missing. Deterministic.
 */
export function fingerprintOf(ev: ValidEvent, specs: readonly FingerprintSpec[]): { key: string; within: number } | undefined {
  const i = specs.findIndex((s) => s.event.includes(ev.event.event_type));
  if (i < 0) return undefined;
  const spec = specs[i]!;
  const values = spec.fields.map((f) => fieldAt(ev.event, f));
  if (values.some((v) => v === undefined || v === null)) return undefined;
  const parts = [String(i), ev.event.event_type, JSON.stringify(values)];
  if (spec.round) parts.push(String(Math.floor(ev.occurredAt / spec.round)));
  return { key: createHash("sha256").update(parts.join("\u0000")).digest("base64url").slice(0, 16), within: spec.within };
}

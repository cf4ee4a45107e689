import { z } from "zod";
import { isValidTimeZone } from "../util/time.ts";
import { EARLIEST_EVENT_TIME } from "./limits.ts";

/**
 * Tenant and user ids become subject tokens and KV key segments, so they are
 * restricted to a set that is safe in both: ASCII letters, digits, `_` and
 * `-`, starting with a letter or digit (ids starting with `_` are reserved for
 * the engine). Producers with other ids encode them (base64url without
 * padding fits this set).
 */
export const ID_TOKEN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

/** `event_id` travels as the `Nats-Msg-Id` header: printable, no spaces. */
export const EVENT_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/** Dot-separated tokens; each dot becomes a subject token boundary. */
export const EVENT_TYPE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,15}$/;

/**
 * A string field. The "must be a string" message is for the wrong type only
 * (zod would otherwise give it for every check); a length check comes first
 * and stops there, so a 10,000-character value is told it is too long.
 */
const text = (max: number) =>
  z
    .string({ error: (iss) => (iss.code === "invalid_type" ? "must be a string" : undefined) })
    .max(max, { error: (iss) => `is too long: ${String(iss.input).length} characters, at most ${max}`, abort: true });

const token = () => text(128).regex(ID_TOKEN, "must be 1-128 characters of A-Z a-z 0-9 _ - and start with a letter or digit");

/**
 * The event contract (design.md §3). The stored message keeps the producer's
 * bytes; this schema is only the reader's view of them.
 */
export const EventSchema = z.object({
  event_id: text(128).regex(EVENT_ID, "must be 1-128 characters of A-Z a-z 0-9 _ . : - and start with a letter or digit"),
  event_type: text(255).regex(EVENT_TYPE, "must be 1-16 dot-separated tokens of A-Z a-z 0-9 _ -"),
  tenant_id: token(),
  user_id: token(),
  /** From 1970 on; how far ahead of its storing an event may be is checked with the stream's time (limits.futureSkew). */
  occurred_at: z.iso
    .datetime({ offset: true, error: "must be an RFC 3339 timestamp with a zone, e.g. 2026-04-13T10:12:45Z" })
    // Only a valid timestamp can be too early (Date.parse of anything else is NaN).
    .refine((v) => !(Date.parse(v) < EARLIEST_EVENT_TIME), "must be 1970-01-01T00:00:00Z or later"),
  source: text(128).optional(),
  payload: z.record(z.string(), z.unknown()).default({}),
  /** User attributes for segmentation (plan, role, region …); `timezone` (IANA) places the event in the user's day. */
  attributes: z
    .record(z.string(), z.unknown())
    .superRefine((a, ctx) => {
      if (a.timezone !== undefined && (typeof a.timezone !== "string" || !isValidTimeZone(a.timezone))) {
        ctx.addIssue({ code: "custom", path: ["timezone"], message: "must be an IANA time zone name, e.g. Europe/Berlin" });
      }
    })
    .optional(),
  /** Business identity for fingerprint dedup across sources. */
  business_key: text(256).optional(),
});

/** An event as producers write it. */
export type EventInput = z.input<typeof EventSchema>;
/** An event after validation. */
export type Event = z.output<typeof EventSchema>;

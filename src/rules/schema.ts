import { z } from "zod";
import { EVENT_TYPE, ID_TOKEN } from "../events/mod.ts";
import { parseDuration } from "../util/duration.ts";
import { rawRuleIssue, ruleBoundIssues } from "./bounds.ts";
import { compileCondition, ConditionError } from "./condition.ts";
import { isValidTimeZone } from "../util/time.ts";

/** Rule and achievement ids: lower-case, stable, usable as KV key segments. */
export const RULE_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;
/** Tier names: same alphabet as ids. */
export const TIER_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
/** An achievement reference: `id` or `id:tier`. */
export const ACHIEVEMENT_REF = /^[a-z0-9][a-z0-9_-]{0,63}(:[a-z0-9][a-z0-9_-]{0,31})?$/;

/** Largest target of a sliding-window count (its state keeps one entry per event in the window). */
export const MAX_SLIDING_TARGET = 1000;

/** Longest duration in a rule (`within`, a sliding window): 100 years of 365 days. */
export const MAX_RULE_DURATION = 100 * 365 * 86_400_000;

/** Instants are what a JavaScript Date can hold (±8.64 × 10¹⁵ ms): anything else cannot be shown or compared. */
const MAX_INSTANT = 8.64e15;

const Condition = z.record(z.string(), z.unknown()).superRefine((cond, ctx) => {
  try {
    compileCondition(cond, "");
  } catch (err) {
    if (!(err instanceof ConditionError)) throw err;
    const path = err.path.split(".").filter(Boolean);
    ctx.addIssue({ code: "custom", message: err.message, path });
  }
});

const Duration = z.unknown().transform((v, ctx) => {
  const ms = typeof v === "string" || typeof v === "number" ? parseDuration(v) : undefined;
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({ code: "custom", message: `not a positive duration: ${JSON.stringify(v)} (use e.g. 30m, 24h, 7d)` });
    return z.NEVER;
  }
  // A long digit string parses to Infinity, which JSON would store as null.
  if (!(ms <= MAX_RULE_DURATION)) {
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(v)} is longer than the longest duration, 36500d` });
    return z.NEVER;
  }
  return ms;
});

const RFC3339 = z.iso.datetime({ offset: true });

/** Epoch ms of an RFC 3339 time with a zone (e.g. 2026-05-01T00:00:00Z), or undefined when `v` is not one (or out of range). */
export function parseInstant(v: unknown): number | undefined {
  if (typeof v !== "string" || !RFC3339.safeParse(v).success) return undefined;
  const t = Date.parse(v);
  return Number.isFinite(t) && Math.abs(t) <= MAX_INSTANT ? t : undefined;
}

/** An instant: RFC 3339 text in files and requests, epoch ms once parsed (so parsed rules parse again). */
const Instant = z.unknown().transform((v, ctx) => {
  if (typeof v === "number" && Number.isInteger(v) && Math.abs(v) <= MAX_INSTANT) return v;
  const t = parseInstant(v);
  if (t !== undefined) return t;
  ctx.addIssue({ code: "custom", message: `not a timestamp: ${JSON.stringify(v)} (use RFC 3339 with a zone, e.g. 2026-05-01T00:00:00Z)` });
  return z.NEVER;
});

const TimeZone = z.string().superRefine((v, ctx) => {
  if (!isValidTimeZone(v)) ctx.addIssue({ code: "custom", message: `unknown time zone ${JSON.stringify(v)} (use an IANA name such as Europe/Berlin)` });
});

const eventTypes = z
  .union([z.string().regex(EVENT_TYPE, "not a valid event type"), z.array(z.string().regex(EVENT_TYPE, "not a valid event type")).min(1)])
  .transform((v) => [...new Set(Array.isArray(v) ? v : [v])]);

const Scalar = z.union([z.string(), z.number(), z.boolean()]);

const Tier = z.object({ name: z.string().regex(TIER_NAME, "tier names are 1-32 characters of a-z 0-9 _ -"), target: z.number().positive() }).strict();

/** Fields every rule has. */
const common = {
  id: z.string().regex(RULE_ID, "must be 1-64 characters of a-z 0-9 _ - starting with a letter or digit"),
  /** Monotonic per id; assigned by the registry when omitted. */
  version: z.number().int().min(1).optional(),
  /** Event time from which this version applies (default: from the start for a first version, from its creation for later ones). */
  effective_from: Instant.optional(),
  /** A disabled version retires the rule from its effective_from on. */
  enabled: z.boolean().default(true),
  title: z.string().max(200).optional(),
  description: z.string().max(2000).optional(),
  /** Secret until unlocked: the API lists it only for users who have unlocked it. */
  hidden: z.boolean().default(false),
  /** Achievements (`id` or `id:tier`) that must be unlocked before this one unlocks. */
  prerequisites: z.array(z.string().regex(ACHIEVEMENT_REF, "must be an achievement id or id:tier")).default([]),
  /** Only events whose `attributes` match: attribute → value or list of values. */
  segment: z
    .record(z.string(), z.union([Scalar, z.array(Scalar).min(1)], { error: "must be a value or a non-empty list of values" }))
    .superRefine((seg, ctx) => {
      for (const name of Object.keys(seg)) {
        if (!/^[A-Za-z0-9_-]+$/.test(name)) ctx.addIssue({ code: "custom", path: [name], message: `attribute name ${JSON.stringify(name)} must be A-Z a-z 0-9 _ -` });
      }
    })
    .optional(),
  /** Availability window on event time: events outside it do not count. */
  starts_at: Instant.optional(),
  ends_at: Instant.optional(),
  /** Default time zone for days and weeks; an event's `attributes.timezone` overrides it. */
  timezone: TimeZone.default("UTC"),
  /** Unlocks again every calendar period (in the event's time zone); each period is its own occurrence. */
  repeatable: z.object({ every: z.enum(["day", "week", "month"]) }).strict().optional(),
  /** Passed through untouched to the unlock event (points, badge URL, …). */
  reward: z.record(z.string(), z.unknown()).optional(),
};

/** `target` or `tiers` (a ladder; each tier is its own unlock). */
const targeted = {
  target: z.number().positive().optional(),
  tiers: z.array(Tier).min(1).optional(),
};

const matcher = { event: eventTypes, where: Condition.optional() };

/** count: N qualifying events, optionally within a sliding or calendar window. */
export const CountRuleSchema = z
  .object({
    ...common,
    ...targeted,
    ...matcher,
    type: z.literal("count"),
    window: z
      .object({ sliding: Duration.optional(), calendar: z.enum(["day", "week", "month"]).optional() })
      .strict()
      .superRefine((w, ctx) => {
        if ((w.sliding === undefined) === (w.calendar === undefined)) ctx.addIssue({ code: "custom", message: "give either sliding (a duration) or calendar (day, week or month)" });
      })
      .transform((w) => (w.sliding !== undefined ? { sliding: w.sliding } : { calendar: w.calendar! }))
      .optional(),
  })
  .strict();

/** threshold: one value, or a running sum / max / distinct count of a field, reaching a bound. */
export const ThresholdRuleSchema = z
  .object({
    ...common,
    ...targeted,
    ...matcher,
    type: z.literal("threshold"),
    /** A payload or attribute path, e.g. `payload.amount`. */
    field: z.string().regex(/^(payload|attributes)(\.[A-Za-z0-9_-]+)+$/, "must be a path under payload or attributes, e.g. payload.amount"),
    aggregate: z.enum(["value", "sum", "max", "distinct"]),
  })
  .strict();

/** streak: N consecutive periods with at least K qualifying events. */
export const StreakRuleSchema = z
  .object({
    ...common,
    ...targeted,
    ...matcher,
    type: z.literal("streak"),
    period: z.enum(["day", "week"]),
    min_per_period: z.number().int().min(1).default(1),
    /** One missed period is forgiven, at most once every `per` periods. */
    grace: z.object({ per: z.number().int().min(2) }).strict().optional(),
    /** Every `earn_every` consecutive qualifying periods earn a freeze (at most `max` held); held freezes cover missed periods. */
    freezes: z.object({ earn_every: z.number().int().min(1), max: z.number().int().min(1) }).strict().optional(),
  })
  .strict();

const Step = z.object({ event: eventTypes, where: Condition.optional(), within: Duration.optional() }).strict();

/** sequence: ordered steps; other events may come between; optional `within` for the whole. */
export const SequenceRuleSchema = z
  .object({
    ...common,
    type: z.literal("sequence"),
    steps: z.array(Step).min(2).max(16),
    within: Duration.optional(),
  })
  .strict();

const Item = z.union([
  z.string().regex(ACHIEVEMENT_REF, "must be an achievement id or id:tier"),
  z.object({ achievement: z.string().regex(ACHIEVEMENT_REF, "must be an achievement id or id:tier") }).strict(),
  z.object({ event: eventTypes, where: Condition.optional() }).strict(),
]);

/** composite: all / any / at least k of achievements and event conditions, optionally within a window. */
export const CompositeRuleSchema = z
  .object({
    ...common,
    type: z.literal("composite"),
    of: z.array(Item).min(1).max(32),
    require: z.union([z.enum(["all", "any"]), z.number().int().min(1)]).default("all"),
    within: Duration.optional(),
  })
  .strict();

/** Every rule type (a discriminated union on `type`), with the checks that need several fields. */
const CheckedRuleSchema = z
  .discriminatedUnion("type", [CountRuleSchema, ThresholdRuleSchema, StreakRuleSchema, SequenceRuleSchema, CompositeRuleSchema])
  .superRefine((r, ctx) => {
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    if (r.type === "count" || r.type === "threshold" || r.type === "streak") {
      const t = r;
      if ((t.target === undefined) === (t.tiers === undefined)) issue(["target"], "give either target or tiers (not both, not neither)");
      const names = new Set<string>();
      t.tiers?.forEach((tier, i) => {
        if (i > 0 && tier.target <= t.tiers![i - 1]!.target) issue(["tiers", i, "target"], `tier targets must increase (${tier.target} after ${t.tiers![i - 1]!.target})`);
        if (names.has(tier.name)) issue(["tiers", i, "name"], `duplicate tier name ${tier.name}`);
        names.add(tier.name);
      });
    }
    if (r.starts_at !== undefined && r.ends_at !== undefined && r.ends_at <= r.starts_at) issue(["ends_at"], "must be after starts_at");
    if (r.type === "count" && r.window && "sliding" in r.window) {
      const max = r.tiers ? r.tiers[r.tiers.length - 1]!.target : (r.target ?? 0);
      if (max > MAX_SLIDING_TARGET) issue(["target"], `a sliding-window count keeps each event of its window; targets above ${MAX_SLIDING_TARGET} are not supported`);
    }
    if (r.type === "count" && r.window && r.repeatable) issue(["repeatable"], "a repeatable rule already resets every period; drop window or repeatable");
    if (r.type === "streak" && r.grace && r.freezes) issue(["freezes"], "choose grace or freezes, not both");
    if (r.type === "count" || r.type === "streak") {
      if (r.target !== undefined && !Number.isInteger(r.target)) issue(["target"], `a ${r.type} target is a whole number`);
      r.tiers?.forEach((t, i) => {
        if (!Number.isInteger(t.target)) issue(["tiers", i, "target"], `a ${r.type} target is a whole number`);
      });
    }
    if ((r.type === "streak" || r.type === "composite") && r.repeatable) issue(["repeatable"], `a ${r.type} rule cannot be repeatable`);
    if (r.type === "sequence") {
      r.steps.forEach((s, i) => {
        if (i === 0 && s.within !== undefined) issue(["steps", 0, "within"], "the first step has no previous step to be within of");
        if (r.within !== undefined && s.within !== undefined && s.within > r.within) issue(["steps", i, "within"], "is longer than the whole sequence's within");
      });
    }
    if (r.type === "composite" && typeof r.require === "number" && r.require > r.of.length) {
      issue(["require"], `requires ${r.require} of ${r.of.length} items`);
    }
  });

/**
 * A stored rule version as read back from the registry: every check of
 * {@link RuleSchema} except the size bounds, which apply to rules coming
 * in (a bound added later must not stop the engine from loading a version
 * it accepted before).
 */
export const StoredRuleSchema = CheckedRuleSchema;

/**
 * A rule coming in (a file, the API): its shape as written (depth,
 * `__proto__` keys) before anything reads it, then every field and
 * cross-field check, then the size bounds (`bounds.ts`). Each issue names
 * its path in the rule.
 */
export const RuleSchema = z.preprocess(
  (raw, ctx) => {
    const issue = rawRuleIssue(raw);
    if (issue) ctx.addIssue({ code: "custom", path: issue.path, message: issue.message });
    return raw;
  },
  CheckedRuleSchema.superRefine((r, ctx) => {
    for (const i of ruleBoundIssues(r)) ctx.addIssue({ code: "custom", path: i.path, message: i.message });
  }),
);

export type CountRule = z.output<typeof CountRuleSchema>;
export type ThresholdRule = z.output<typeof ThresholdRuleSchema>;
export type StreakRule = z.output<typeof StreakRuleSchema>;
export type SequenceRule = z.output<typeof SequenceRuleSchema>;
export type CompositeRule = z.output<typeof CompositeRuleSchema>;
/** A validated rule. */
export type Rule = z.output<typeof RuleSchema>;
/** A rule as written in a file or sent to the API. */
export type RuleInput = z.input<typeof CheckedRuleSchema>;

/** One rules file: an optional tenant (default `*`, the shared set) and its rules. */
export const RuleFileSchema = z
  .object({
    tenant: z.union([z.literal("*"), z.string().regex(ID_TOKEN, "must be a tenant id or *")]).default("*"),
    rules: z.array(RuleSchema),
  })
  .strict();

export type RuleFile = z.output<typeof RuleFileSchema>;

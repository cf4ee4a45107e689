import { z } from "zod";
import { EVENT_TYPE, ID_TOKEN } from "../events/mod.ts";
import { compileCondition, ConditionError } from "./condition.ts";

/** Rule and achievement ids: lower-case, stable, usable as KV key segments. */
export const RULE_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

const Condition = z.record(z.string(), z.unknown()).superRefine((cond, ctx) => {
  try {
    compileCondition(cond, "");
  } catch (err) {
    if (!(err instanceof ConditionError)) throw err;
    const path = err.path.split(".").filter(Boolean);
    ctx.addIssue({ code: "custom", message: err.message, path });
  }
});

const common = {
  id: z.string().regex(RULE_ID, "id must be 1-64 characters of a-z 0-9 _ - starting with a letter or digit"),
  version: z.number().int().min(1),
  title: z.string().max(200).optional(),
  description: z.string().max(2000).optional(),
  /** Secret until unlocked: the API omits it for users who have not unlocked it. */
  hidden: z.boolean().default(false),
  /** Passed through untouched to the unlock event (points, badge URL, …). */
  reward: z.record(z.string(), z.unknown()).optional(),
};

const eventTypes = z
  .union([z.string().regex(EVENT_TYPE, "not a valid event type"), z.array(z.string().regex(EVENT_TYPE, "not a valid event type")).min(1)])
  .transform((v) => [...new Set(Array.isArray(v) ? v : [v])]);

/** count: N qualifying events of one of the given types. */
export const CountRuleSchema = z
  .object({
    ...common,
    type: z.literal("count"),
    event: eventTypes,
    where: Condition.optional(),
    target: z.number().int().min(1),
  })
  .strict();

/** Every rule type the engine knows (a discriminated union on `type`). */
export const RuleSchema = z.discriminatedUnion("type", [CountRuleSchema]);

export type CountRule = z.output<typeof CountRuleSchema>;
export type Rule = z.output<typeof RuleSchema>;

/** One rules file: an optional tenant (default: the shared set) and its rules. */
export const RuleFileSchema = z
  .object({
    tenant: z.union([z.literal("*"), z.string().regex(ID_TOKEN, "tenant must be a tenant id or *")]).default("*"),
    rules: z.array(RuleSchema),
  })
  .strict();

export type RuleFile = z.output<typeof RuleFileSchema>;

/** The rule types' state machines, and which one a rule uses. */
import type { Rule } from "../schema.ts";
import { composite } from "./composite.ts";
import { count, countCalendar, countSliding } from "./count.ts";
import { sequence } from "./sequence.ts";
import { streak } from "./streak.ts";
import { threshold } from "./threshold.ts";
import type { Kind } from "./types.ts";

export { ownEntry, setOwnEntry, TRIGGER_LIMIT, type Kind, type KindContext, type UnlockRef } from "./types.ts";
export { addPeriod, streakStats } from "./streak.ts";
export { SUM_SCALE } from "./threshold.ts";

/** The state machine of a rule. */
export function kindOf(rule: Rule): Kind<{ k: string }> {
  switch (rule.type) {
    case "count":
      if (rule.window && "sliding" in rule.window) return countSliding as Kind<{ k: string }>;
      if (rule.window) return countCalendar as Kind<{ k: string }>;
      return count as Kind<{ k: string }>;
    case "threshold":
      return threshold as Kind<{ k: string }>;
    case "streak":
      return streak as Kind<{ k: string }>;
    case "sequence":
      return sequence as Kind<{ k: string }>;
    case "composite":
      return composite as Kind<{ k: string }>;
  }
}

import { z } from "zod";

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `500ms`, `30s`, `2m`, `24h`, `7d` (or a number of ms) to milliseconds. */
export function parseDuration(v: string | number): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? v : undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v.trim());
  return m ? Math.round(Number(m[1]) * UNITS[m[2]!]!) : undefined;
}

/** A zod field for durations; the output is milliseconds. */
export const Duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: `not a duration: ${JSON.stringify(v)} (use e.g. 500ms, 30s, 2m, 24h, 7d)` });
    return z.NEVER;
  }
  return ms;
});

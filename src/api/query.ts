/** Numbers in query strings and paths, read the same way on every route: decimal digits, a range, one message. */

/** `raw` as a whole number from 1 to `max` written in decimal digits; undefined for anything else. */
export function positiveInt(raw: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  return Number.isSafeInteger(n) && n >= 1 && n <= max ? n : undefined;
}

/** A page of a listing: how many (`limit`) and from which sequence on (`from`, absent: the start). */
export type Page = { limit: number; from?: number };

/**
 * The `limit` (1 to `maxLimit`, `defaultLimit` when absent) and `from` (a
 * positive sequence, optional) of a listing's query, or the message of a
 * 400 naming the one that is wrong.
 */
export function pageQuery(query: { limit?: string | undefined; from?: string | undefined }, maxLimit: number, defaultLimit = Math.min(100, maxLimit)): Page | { error: string } {
  const limit = query.limit === undefined ? defaultLimit : positiveInt(query.limit, maxLimit);
  if (limit === undefined) return { error: `limit must be an integer from 1 to ${maxLimit}` };
  if (query.from === undefined) return { limit };
  const from = positiveInt(query.from);
  return from === undefined ? { error: "from must be a positive integer" } : { limit, from };
}

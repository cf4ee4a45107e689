/**
 * Per-tenant ingest quotas: a token bucket per tenant that refills at
 * `rate` events a second up to `burst`. A request takes the tokens of all
 * its events at once or none (nothing half-accepted); a refusal says when
 * enough tokens will be there.
 *
 * Written here rather than taken from @fastify/rate-limit, which counts
 * requests in fixed windows: a quota on events needs a request of n events
 * to cost n. The buckets live in the process: with several API processes,
 * each enforces the quota on its own share of the traffic.
 */
export class TenantQuotas {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  /** `rate` events/s (0: no quota) and `burst` events at most at once. */
  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {}

  /**
   * Takes `counts` (events per tenant) if every tenant has the tokens;
   * otherwise takes nothing and returns the seconds until the request
   * would fit, and the tenant that is over.
   */
  take(counts: ReadonlyMap<string, number>, now = Date.now()): { ok: true } | { ok: false; tenant: string; retryAfterSeconds: number } {
    if (this.rate <= 0) return { ok: true };
    const levels = new Map<string, { tokens: number; at: number }>();
    for (const [tenant, n] of counts) {
      const b = this.#buckets.get(tenant) ?? { tokens: this.burst, at: now };
      const tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.rate);
      if (tokens < n) return { ok: false, tenant, retryAfterSeconds: n > this.burst ? Infinity : (n - tokens) / this.rate };
      levels.set(tenant, { tokens: tokens - n, at: now });
    }
    for (const [tenant, level] of levels) this.#buckets.set(tenant, level);
    // Full buckets carry no information: forget them, so idle tenants cost no memory.
    if (this.#buckets.size > 10_000) for (const [t, b] of this.#buckets) if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.#buckets.delete(t);
    return { ok: true };
  }
}

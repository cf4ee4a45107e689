/**
 * The counters of one process, kept as plain numbers on the hot path and
 * read by `/v1/stats`, the logs, the stats snapshots the dashboard sums, and
 * the Prometheus registry (at scrape time, see `prometheus.ts`).
 *
 * Per-tenant counters are bounded: the first `maxTenants` tenants seen get
 * their own counters, every later one shares {@link OTHER}. So 10,000
 * tenants that send one event each cost `maxTenants + 1` entries, in memory
 * and in label values. Achievements are bounded the same way within each
 * tenant: its first `maxAchievements` get their own counters, the rest share
 * {@link OTHER}.
 */

/** The bucket of the tenants beyond the cap, of achievements of those tenants, and of a tenant's achievements beyond its cap. */
export const OTHER = "other";
/** The tenant of a message whose subject names none (an unreadable subject, a body too large to parse). */
export const UNKNOWN = "unknown";

/** What happened to one tenant's events, from the workers' side (and the API's for `window`). */
export type TenantCounts = {
  /** Events delivered to a worker (redeliveries included). */
  received: number;
  /** Events applied to a user's state (counted once). */
  applied: number;
  /** Not applied again: a redelivery, or an event id the user's record already holds. */
  duplicates: number;
  /** Dropped as the same business action as an earlier event (a dedup fingerprint). */
  fingerprinted: number;
  /** Refused by JetStream's duplicate window at publish (`POST /v1/events` sees these; NATS producers see their own). */
  windowDuplicates: number;
  /** Arrived after a later event of the user left the reorder window (sequences skip them). */
  late: number;
  /** Applied but changed no rule's progress (nothing to store). */
  unchanged: number;
  /** Unlocks published for the first time. */
  unlocks: number;
};

function zero(): TenantCounts {
  return { received: 0, applied: 0, duplicates: 0, fingerprinted: 0, windowDuplicates: 0, late: 0, unchanged: 0, unlocks: 0 };
}

/** One entry of a counter keyed by several labels. */
export type Keyed = { labels: string[]; value: number };

/** Counts by a tuple of label values (joined with NUL, which no id contains). */
export class KeyedCounts {
  readonly #m = new Map<string, number>();
  add(labels: string[], n = 1): void {
    const k = labels.join("\0");
    this.#m.set(k, (this.#m.get(k) ?? 0) + n);
  }
  entries(): Keyed[] {
    return [...this.#m].map(([k, value]) => ({ labels: k.split("\0"), value }));
  }
  total(): number {
    let t = 0;
    for (const v of this.#m.values()) t += v;
    return t;
  }
}

/**
 * Durations the hot path reports; the Prometheus layer turns them into
 * histograms (no-ops until it does, so the pipeline needs no registry).
 */
export type Observers = {
  /** Rules evaluated over `events` events of one user in `seconds`. */
  evaluation(seconds: number, events: number): void;
  /** From the unlock's last trigger event arriving in the stream to the unlock being published. */
  unlockLatency(seconds: number): void;
  /** How long an event waited in the reorder window. */
  reorderHold(seconds: number): void;
  /** From an unlock being published to a webhook receiver accepting it. */
  webhookDelivery(seconds: number): void;
};

const NO_OBSERVERS: Observers = { evaluation: () => {}, unlockLatency: () => {}, reorderHold: () => {}, webhookDelivery: () => {} };

export class Stats {
  /** Set by the metrics registry; no-ops before. */
  observe: Observers = NO_OBSERVERS;
  /** Tenants with their own counters; the rest count under {@link OTHER}. */
  readonly maxTenants: number;
  /** Achievements with their own counters per tenant; the rest of that tenant's count under {@link OTHER}. */
  readonly maxAchievements: number;
  readonly #tenants = new Map<string, TenantCounts>();
  /** The achievements kept apart, per tenant label. */
  readonly #achievements = new Map<string, Set<string>>();
  /** Dead letters sent, by tenant, reason and origin (`worker` or `http`). */
  readonly deadLetters = new KeyedCounts();
  /** Unlocks by tenant and achievement (each bounded, see {@link maxTenants} and {@link maxAchievements}). */
  readonly unlocksBy = new KeyedCounts();
  /** User states written (one compare-and-set each). */
  stateWrites = 0;
  /** Unlock writes: one create-only publish per unlock stored. */
  unlockWrites = 0;
  /** Transient failures retried in-process. */
  retries = 0;
  /** Compare-and-set conflicts on user state. */
  conflicts = 0;
  /** Partition rewinds after a delivery gap or a restart with pending messages. */
  rewinds = 0;
  /** Rejected events the DLQ could not take (each logged at error level). */
  deadLetterFailures = 0;
  /** Lease renewals that succeeded, that failed (timeout, conflict), and leases lost or won. */
  leaseRenewals = 0;
  leaseRenewalFailures = 0;
  leasesLost = 0;
  leasesAcquired = 0;
  /** Requests refused for rate (per key, per tenant, failed authentications) or quota. */
  readonly rateLimited = new KeyedCounts();
  /** Webhook delivery attempts by outcome (delivered, retrying, dead_letter). */
  readonly webhookAttempts = new KeyedCounts();
  /** Server-sent-event streams of unlocks open now, and those that ended, by why (client, slow, failed, server). */
  sseStreams = 0;
  readonly sseEnded = new KeyedCounts();

  constructor(maxTenants = 100, maxAchievements = 100) {
    this.maxTenants = maxTenants;
    this.maxAchievements = maxAchievements;
  }

  /** The counters of `tenant` (or of {@link OTHER} once `maxTenants` tenants have their own). */
  tenant(tenant: string): TenantCounts {
    let t = this.#tenants.get(tenant);
    if (t) return t;
    const key = this.#tenants.size < this.maxTenants || tenant === OTHER ? tenant : OTHER;
    t = this.#tenants.get(key);
    if (!t) this.#tenants.set(key, (t = zero()));
    return t;
  }

  /** The label a tenant is counted under (itself or {@link OTHER}). */
  tenantLabel(tenant: string): string {
    return this.#tenants.has(tenant) || this.#tenants.size < this.maxTenants ? tenant : OTHER;
  }

  /** Every tenant bucket with its counters. */
  tenants(): [string, TenantCounts][] {
    return [...this.#tenants];
  }

  deadLetter(tenant: string | undefined, reason: string, origin: string): void {
    const t = this.tenantLabel(tenant ?? UNKNOWN);
    this.tenant(t);
    this.deadLetters.add([t, reason, origin]);
  }

  unlock(tenant: string, achievement: string): void {
    const t = this.tenant(tenant);
    t.unlocks++;
    // Only a tenant with its own counters keeps its achievements apart, and only its first maxAchievements: the
    // label's values stay bounded.
    const label = this.tenantLabel(tenant);
    this.unlocksBy.add([label, label === OTHER ? OTHER : this.#achievementLabel(label, achievement)]);
  }

  /** The label an achievement of tenant label `tenant` is counted under (itself or {@link OTHER}). */
  #achievementLabel(tenant: string, achievement: string): string {
    let kept = this.#achievements.get(tenant);
    if (!kept) this.#achievements.set(tenant, (kept = new Set()));
    if (kept.has(achievement)) return achievement;
    if (kept.size >= this.maxAchievements || achievement === OTHER) return OTHER;
    kept.add(achievement);
    return achievement;
  }

  /** One counter summed over every tenant. */
  total(k: keyof TenantCounts): number {
    let n = 0;
    for (const t of this.#tenants.values()) n += t[k];
    return n;
  }

  get received(): number {
    return this.total("received");
  }
  get applied(): number {
    return this.total("applied");
  }
  get duplicates(): number {
    return this.total("duplicates");
  }
  get fingerprinted(): number {
    return this.total("fingerprinted");
  }
  get unchanged(): number {
    return this.total("unchanged");
  }
  get late(): number {
    return this.total("late");
  }
  get unlocks(): number {
    return this.total("unlocks");
  }
  /** Events the workers sent to the DLQ (the API's rejections are counted apart, as `http`). */
  get rejected(): number {
    return this.deadLetters.entries().reduce((n, e) => n + (e.labels[2] === "worker" ? e.value : 0), 0);
  }

  /** Totals over every tenant, and the process counters (for `/v1/stats` and the stop log). */
  snapshot(): Record<string, number> {
    const sum = zero();
    for (const t of this.#tenants.values()) for (const k of Object.keys(sum) as (keyof TenantCounts)[]) sum[k] += t[k];
    const rejected = this.rejected;
    return {
      received: sum.received,
      applied: sum.applied,
      duplicates: sum.duplicates,
      fingerprinted: sum.fingerprinted,
      window_duplicates: sum.windowDuplicates,
      late: sum.late,
      unchanged: sum.unchanged,
      rejected,
      rejected_http: this.deadLetters.total() - rejected,
      unlocks: sum.unlocks,
      stateWrites: this.stateWrites,
      unlockWrites: this.unlockWrites,
      retries: this.retries,
      conflicts: this.conflicts,
      rewinds: this.rewinds,
      deadLetterFailures: this.deadLetterFailures,
    };
  }
}

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { cachedFor } from "../util/coalesce.ts";
import { type Keyed, type Stats, type TenantCounts } from "./stats.ts";

/** What the registry reads from the running process at scrape time (each call bounded by its caller). */
export type LiveSources = {
  /** Partitions this process owns now (empty for an API-only process). */
  owned(): number[];
  /** Events held in the reorder windows of this process. */
  held(): number;
  /** Loads of user state answered from the cache, and those that went to the bucket. */
  cache(): { hits: number; misses: number };
  /** Per owned partition: messages not yet delivered, and delivered but not acknowledged; undefined when NATS does not answer in time. */
  consumers(): Promise<Map<number, { pending: number; ackPending: number }> | undefined>;
  /** Messages in the DLQ stream; undefined when NATS does not answer in time. */
  dlqDepth(): Promise<number | undefined>;
};

/** Buckets (seconds) of the end-to-end unlock latency: the reorder window (2 s by default) sits inside it for sequences. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Rule evaluation per event is microseconds. */
const EVALUATION_BUCKETS = [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2];
const HOLD_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10];
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** Per-tenant counters exported as `achd_events_<name>_total{tenant}`. */
const TENANT_COUNTERS: [name: string, field: keyof TenantCounts, help: string][] = [
  ["achd_events_received_total", "received", "Events delivered to this process's workers (redeliveries included), per tenant."],
  ["achd_events_applied_total", "applied", "Events applied to a user's state, each counted once, per tenant."],
  ["achd_events_late_total", "late", "Events that arrived after a later event of their user left the reorder window (sequence rules skip them), per tenant."],
];

/**
 * The Prometheus metrics of one process, in a registry of its own (several
 * engines may share a process, in tests). Counters are read from
 * {@link Stats} when scraped, so the hot path only adds to numbers; the
 * histograms are prom-client's, fed through `stats.observe`.
 */
export class EngineMetrics {
  readonly registry = new Registry();
  /** End-to-end latency (stored → unlock published), also read by the stats snapshots. */
  readonly unlockLatency: Histogram;
  readonly #http: { requests: Counter<"route" | "method" | "status">; duration: Histogram<"route" | "method"> };

  constructor(stats: Stats, live: LiveSources, labels: { process: string }) {
    const r = this.registry;
    r.setDefaultLabels({ process: labels.process });
    collectDefaultMetrics({ register: r });
    const registers = [r];
    const fromTenants = (name: string, field: keyof TenantCounts, help: string) =>
      new Counter({
        name,
        help,
        labelNames: ["tenant"],
        registers,
        collect() {
          this.reset();
          for (const [tenant, c] of stats.tenants()) this.inc({ tenant }, c[field]);
        },
      });
    for (const [name, field, help] of TENANT_COUNTERS) fromTenants(name, field, help);
    new Counter({
      name: "achd_events_duplicate_total",
      help: "Events that did not count again, per tenant and kind: window (JetStream's publish duplicate window, seen by POST /v1/events), record (a redelivery, or an event id the user's record holds), fingerprint (the same business action).",
      labelNames: ["tenant", "kind"],
      registers,
      collect() {
        this.reset();
        for (const [tenant, c] of stats.tenants()) {
          this.inc({ tenant, kind: "window" }, c.windowDuplicates);
          this.inc({ tenant, kind: "record" }, c.duplicates);
          this.inc({ tenant, kind: "fingerprint" }, c.fingerprinted);
        }
      },
    });
    const keyed = (name: string, help: string, labelNames: string[], read: () => Keyed[]) =>
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          for (const e of read()) this.inc(Object.fromEntries(labelNames.map((l, i) => [l, e.labels[i]!])), e.value);
        },
      });
    keyed("achd_dead_letters_total", "Events sent to the DLQ, per tenant, reason (the rejection code) and origin (worker or http).", ["tenant", "reason", "origin"], () => stats.deadLetters.entries());
    keyed("achd_unlocks_total", "Unlocks published for the first time, per tenant and achievement (tenants beyond metrics.maxTenants, and their achievements, count as other; so do a tenant's achievements beyond metrics.maxAchievements).", ["tenant", "achievement"], () => stats.unlocksBy.entries());
    keyed("achd_sse_streams_ended_total", "Server-sent-event streams of unlocks that ended, by why: client (it went away), slow (it could not keep up and was cut off), failed (its catch-up could not be read), server (stopping).", ["why"], () => stats.sseEnded.entries());
    keyed("achd_webhook_attempts_total", "Webhook delivery attempts of the delivering process, by outcome: delivered (a 2xx), retrying (it will be tried again), dead_letter (given up on).", ["outcome"], () => stats.webhookAttempts.entries());
    keyed("achd_http_rate_limited_total", "HTTP requests refused with 429, per limit: key, tenant (request rates), auth (failed authentications per address), quota (a tenant's event quota).", ["limit"], () => stats.rateLimited.entries());
    const plain = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    plain("achd_state_writes_total", "User states written (one compare-and-set each).", () => stats.stateWrites);
    plain("achd_unlock_writes_total", "Acknowledged writes for unlocks (each unlock is one create-only publish).", () => stats.unlockWrites);
    plain("achd_state_conflicts_total", "Compare-and-set conflicts on user state (the user is recomputed from a fresh read).", () => stats.conflicts);
    plain("achd_retries_total", "Transient failures retried in-process.", () => stats.retries);
    plain("achd_partition_rewinds_total", "Partition rewinds after a delivery gap or a restart with messages in flight.", () => stats.rewinds);
    plain("achd_dead_letter_failures_total", "Rejected events the DLQ could not take (each logged at error level).", () => stats.deadLetterFailures);
    plain("achd_lease_renewals_total", "Lease renewals that succeeded.", () => stats.leaseRenewals);
    plain("achd_lease_renewal_failures_total", "Lease renewals that failed (a timeout, a server away, or the lease lost).", () => stats.leaseRenewalFailures);
    plain("achd_leases_lost_total", "Leases found taken or gone at renewal (the partition stopped here).", () => stats.leasesLost);
    plain("achd_leases_acquired_total", "Partitions this process took (at start, after a rebalance or another worker's death).", () => stats.leasesAcquired);
    plain("achd_state_cache_hits_total", "Loads of user state answered from the in-memory cache.", () => live.cache().hits);
    plain("achd_state_cache_misses_total", "Loads of user state that read the bucket.", () => live.cache().misses);

    new Gauge({
      name: "achd_partitions_owned",
      help: "Partitions this process owns.",
      registers,
      collect() {
        this.set(live.owned().length);
      },
    });
    new Gauge({
      name: "achd_sse_streams",
      help: "Server-sent-event streams of unlocks open now.",
      registers,
      collect() {
        this.set(stats.sseStreams);
      },
    });
    new Gauge({
      name: "achd_reorder_held_events",
      help: "Events held in the reorder windows of this process's partitions.",
      registers,
      collect() {
        this.set(live.held());
      },
    });
    // Lag and ack-pending of the partitions this process owns (the owner reports them: summed over processes, each
    // partition once). One consumer listing serves both gauges of a scrape.
    const consumers = cachedFor(500, () => live.consumers());
    const fill = async (g: Gauge<"partition">, field: "pending" | "ackPending") => {
      const m = await consumers();
      g.reset();
      for (const [p, c] of m ?? []) g.set({ partition: String(p) }, c[field]);
    };
    new Gauge({
      name: "achd_consumer_pending_messages",
      help: "Messages of an owned partition not yet delivered to its worker (the partition's lag).",
      labelNames: ["partition"],
      registers,
      async collect() {
        await fill(this, "pending");
      },
    });
    new Gauge({
      name: "achd_consumer_ack_pending_messages",
      help: "Messages of an owned partition delivered but not yet acknowledged (in flight or held by the reorder window).",
      labelNames: ["partition"],
      registers,
      async collect() {
        await fill(this, "ackPending");
      },
    });
    new Gauge({
      name: "achd_dlq_messages",
      help: "Messages in the DLQ stream (dead letters not yet redriven or purged).",
      registers,
      async collect() {
        // Unanswered: left out of this scrape (as the consumer gauges are), not its last value shown as current
        // (remove(): a gauge without labels would otherwise show 0).
        const n = await live.dlqDepth();
        if (n === undefined) this.remove();
        else this.set(n);
      },
    });

    this.unlockLatency = new Histogram({ name: "achd_unlock_latency_seconds", help: "From an unlock's last trigger event being stored in the events stream to the unlock being published.", buckets: LATENCY_BUCKETS, registers });
    const evaluation = new Histogram({ name: "achd_rule_evaluation_seconds", help: "Rule evaluation time per event (a user's events of a step evaluated together, divided among them).", buckets: EVALUATION_BUCKETS, registers });
    const webhook = new Histogram({ name: "achd_webhook_delivery_seconds", help: "From an unlock being published to a webhook receiver answering 2xx (retries included).", buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600], registers });
    const hold = new Histogram({ name: "achd_reorder_hold_seconds", help: "How long an event waited in the reorder window before it was applied in event-time order.", buckets: HOLD_BUCKETS, registers });
    stats.observe = {
      evaluation: (seconds, events) => {
        const each = seconds / events;
        for (let i = 0; i < events; i++) evaluation.observe(each);
      },
      unlockLatency: (seconds) => this.unlockLatency.observe(seconds),
      reorderHold: (seconds) => hold.observe(seconds),
      webhookDelivery: (seconds) => webhook.observe(seconds),
    };

    this.#http = {
      requests: new Counter({ name: "achd_http_requests_total", help: "HTTP requests answered, per route (its pattern), method and status code.", labelNames: ["route", "method", "status"], registers }),
      duration: new Histogram({ name: "achd_http_request_duration_seconds", help: "HTTP request duration, per route and method.", labelNames: ["route", "method"], buckets: HTTP_BUCKETS, registers }),
    };
  }

  /** Counts one HTTP request; `route` is the route's pattern (bounded), never the raw URL. */
  http(route: string, method: string, status: number, seconds: number): void {
    this.#http.requests.inc({ route, method, status: String(status) });
    this.#http.duration.observe({ route, method }, seconds);
  }

  /** The exposition text, and its content type. */
  async text(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}

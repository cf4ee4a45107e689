import type { NatsConnection } from "@nats-io/transport-node";
import type { KV } from "@nats-io/kv";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { ApiKeys, StreamTokens } from "../auth/mod.ts";
import type { Config } from "../config/mod.ts";
import type { HistoryStore } from "../history/mod.ts";
import type { DeadLetters } from "../pipeline/mod.ts";
import type { DashboardFeed, EngineMetrics, Stats } from "../metrics/mod.ts";
import type { UnlockFanout, WebhookRegistry } from "../notify/mod.ts";
import type { LeaseTable, Membership } from "../cluster/mod.ts";
import type { RuleRegistry } from "../registry/mod.ts";
import type { RuleBook } from "../rules/mod.ts";
import type { StateStore } from "../state/mod.ts";
import type { TenantRegistry } from "../tenants/mod.ts";
import type { EngineState } from "../util/lifecycle.ts";
import type { Logger } from "../util/log.ts";

/** What the HTTP API needs from the process. */
export type ApiContext = {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Reads user state (bypassing the worker's cache: another process may own the partition). */
  state: StateStore;
  rules: () => RuleBook;
  /** Versioned rule storage, for the rules endpoints. */
  registry: RuleRegistry;
  /** Read-only views of partition ownership, for the status endpoint. */
  leases: LeaseTable;
  members: Membership;
  dlq: DeadLetters;
  stats: Stats;
  config: Config;
  log: Logger;
  /** Tenants allowed on NATS (their nkeys). */
  tenants: TenantRegistry;
  /** Every tenant's webhooks: registry, delivery log, dead letters (the webhooks routes). */
  webhooks: WebhookRegistry;
  /** Reports of history runs: shadow runs, backfills, rebuilds (bucket `ach_history`). */
  history: HistoryStore;
  /**
   * The buckets as stored, for the history routes: a rebuild replaces a
   * user's state (`ach_state`) with compare-and-set and archives its seen
   * ids (`ach_seen`); a backfill marks the unlocks it publishes in users'
   * state.
   */
  buckets: { state: KV; seen: KV };
  /** API keys; undefined in `auth.mode: none` (every request is let through). */
  keys: ApiKeys | undefined;
  /** This process's Prometheus metrics (`/metrics`); the HTTP requests are counted there too. */
  metrics?: EngineMetrics;
  /** The whole deployment as the dashboard shows it (`/v1/dashboard`). */
  dashboard?: DashboardFeed;
  /** The process's reader of the unlocks stream, which SSE clients listen to. */
  unlocks?: UnlockFanout;
  /** Signs and checks the tokens that open an unlock stream without a key (EventSource). */
  streamTokens?: StreamTokens;
  /** The engine's state (`starting`, `running`, `stopping`, …), shown by `/v1/status`. */
  engineState?: () => EngineState;
};

/** The body of every 4xx/5xx answer. */
export type ErrorBody = { error: string; message: string };

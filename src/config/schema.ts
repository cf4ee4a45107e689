import { z } from "zod";
import { DEFAULT_EVENT_LIMITS } from "../events/mod.ts";
import { Duration } from "../util/duration.ts";

/**
 * The engine's configuration: one schema, every field with its default.
 * Loaded from `config/achd.yaml` (or `ACH_CONFIG`) and environment variables;
 * see {@link loadConfig} and the README's configuration table.
 */
export const ConfigSchema = z
  .object({
    nats: z
      .object({
        /** Server URL(s), comma-separated. Unset: start the embedded nats-server. */
        url: z.string().min(1).optional(),
        /** The embedded server (only when `url` is unset). */
        embedded: z
          .object({
            host: z.string().default("127.0.0.1"),
            port: z.number().int().min(-1).max(65535).default(4222),
            /** Base server config; the engine adds the store folder, the authorization and (before 2.10) the partition mapping. */
            configFile: z.string().default("config/nats-server.conf"),
            /**
             * The file store's fsync policy (nats-server 2.10+): `always` fsyncs each write before the server
             * acknowledges it; `default` flushes in the background (every 2 minutes), so a power loss can lose
             * acknowledged writes. See the README's durability section.
             */
            sync: z.enum(["default", "always"]).default("default"),
          })
          .strict()
          .prefault({}),
        /** Replicas of streams and buckets (1 on one server, 3 on a cluster). */
        replicas: z.number().int().min(1).max(5).default(1),
        /** Give up start-up when the server is not reachable within this time. */
        connectTimeout: Duration.default(10_000),
        /**
         * The engine's own NATS credential: an nkey seed file or a `.creds` file (JWT mode).
         * Unset with the embedded server: the engine generates its seed under `<dataDir>/auth/`.
         * Unset with `url`: connect without credentials (a server without authorization).
         */
        credentials: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    /** Where the embedded server keeps its data. */
    dataDir: z.string().default("./data"),
    /** Number of partitions; fixed when the events stream is created. */
    partitions: z.number().int().min(1).max(1024).default(8),
    /** A rules file or a folder of them. */
    rules: z.string().default("config/rules"),
    http: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().default("127.0.0.1"),
        port: z.number().int().min(0).max(65535).default(8080),
        /** Most events accepted by one `POST /v1/events`. */
        maxBatch: z.number().int().min(1).max(10_000).default(500),
        /** Largest request body, in bytes (a batch of events included); larger: 413 before it is read whole. */
        maxBodyBytes: z.number().int().min(65_536).max(64 * 1_048_576).default(1_048_576),
        /** Deepest nesting of objects and arrays in a request body, checked before parsing; deeper: 400. */
        maxDepth: z.number().int().min(4).max(256).default(32),
        /** A request (headers and body) must arrive within this; a client that stalls is cut off. */
        requestTimeout: Duration.default(10_000),
        /** Requests per window, per API key and per tenant (0: no limit); over it: 429 with Retry-After. */
        rateLimit: z
          .object({
            perKey: z.number().int().min(0).default(100),
            perTenant: z.number().int().min(0).default(300),
            window: Duration.default(1_000),
            /** Failed authentications per client address per minute (0: no limit); over it: 429, so guessing keys gets slow quickly. */
            authFailures: z.number().int().min(0).default(60),
          })
          .strict()
          .prefault({}),
        /** Server-sent event streams of unlocks (`/v1/tenants/:tenant/unlocks/stream`). */
        sse: z
          .object({
            /** A comment line this often keeps proxies from closing an idle stream. */
            heartbeat: Duration.default(15_000),
            /** A client whose unsent output stays past this many bytes for 5 s (or grows past eight times it) is disconnected with a reason. */
            maxBufferedBytes: z.number().int().min(16_384).max(64 * 1_048_576).default(1_048_576),
            /** Streams one tenant (or the admins' every-tenant stream) may hold open at once in a process; more: 429. */
            maxPerTenant: z.number().int().min(1).max(100_000).default(2_000),
          })
          .strict()
          .prefault({}),
        /** Events a tenant may send through `POST /v1/events`: a steady rate and a burst (0: no quota). */
        quota: z
          .object({
            eventsPerSecond: z.number().min(0).default(2000),
            burst: z.number().int().min(0).default(10_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    events: z
      .object({
        /** Largest accepted event body, in bytes. */
        maxBytes: z.number().int().min(256).max(1_048_576).default(65_536),
        /** How long the events stream keeps events (0 = forever). */
        maxAge: Duration.default(7 * 86_400_000),
        /** JetStream's publish dedup window on `Nats-Msg-Id`. */
        duplicateWindow: Duration.default(120_000),
      })
      .strict()
      .prefault({}),
    unlocks: z
      .object({
        /** Dedup window of unlock events; covers republishing after a crash. */
        duplicateWindow: Duration.default(86_400_000),
      })
      .strict()
      .prefault({}),
    worker: z
      .object({
        enabled: z.boolean().default(true),
        /** This worker's name in leases; a restarted worker with the same id takes its partitions back at once. Default: the host name. */
        id: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 characters of A-Z a-z 0-9 _ -")
          .optional(),
        /** Most messages a partition pulls at once; batches form from what has arrived. */
        batchSize: z.number().int().min(1).max(10_000).default(500),
        /** Consumer ack wait: an unacknowledged message is redelivered after this. */
        ackWait: Duration.default(30_000),
        /** Per-partition cap on delivered but unacknowledged messages. */
        maxAckPending: z.number().int().min(1).default(20_000),
        /** Users read or written at once, across all partitions of a process: keeps the server's queues (and so lease renewals) short. */
        concurrency: z.number().int().min(1).max(100_000).default(256),
        /** Users whose state is cached in memory (LRU); bounds the worker's memory. */
        cacheUsers: z.number().int().min(0).default(100_000),
        /** Memory the state cache may use, in MB (states are cached as their stored bytes). */
        cacheMB: z.number().int().min(1).max(65_536).default(64),
        /**
         * Write-behind: how long a user's changed state may wait in memory before it is written, so that the
         * steps of that time cost one write (0: written in each step). A state with new unlocks is written at once;
         * nothing is acknowledged before the states its events changed are written.
         */
        writeBehind: Duration.default(1_000),
        /** Most users whose changed state waits, per partition; beyond, the oldest are written at the end of the step. */
        writeBehindUsers: z.number().int().min(0).max(1_000_000).default(2_000),
        /** Event ids kept in a user's state before they move, as one chunk, to the seen-ids archive (0: no event-id record). */
        recentIds: z.number().int().min(0).max(1000).default(64),
        /** Longest pause between retries of a transient failure. */
        maxBackoff: Duration.default(5_000),
        /** Failures that are not about the connection, per user and step, before its events go to the DLQ. */
        maxAttempts: z.number().int().min(1).max(100).default(5),
      })
      .strict()
      .prefault({}),
    dedup: z
      .object({
        /**
         * Business fingerprints: events of these types whose fields hash the
         * same collapse into the first one when they are within `within` of
         * each other (event time), whatever their event_id and source.
         */
        fingerprints: z
          .array(
            z
              .object({
                event: z.union([z.string(), z.array(z.string()).min(1)]).transform((v) => (Array.isArray(v) ? v : [v])),
                fields: z.array(z.string().regex(/^(payload|attributes)(\.[A-Za-z0-9_-]+)+$|^source$|^business_key$/, "must be payload.…, attributes.…, source or business_key")).min(1),
                within: Duration,
                /** Also put the event time, rounded down to this, into the fingerprint. */
                round: Duration.optional(),
              })
              .strict(),
          )
          .default([]),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        /** Prometheus metrics and the stats snapshots the dashboard sums (off: no `/metrics`, this process missing from the dashboard). */
        enabled: z.boolean().default(true),
        /** Tenants counted under their own label; the rest share the label `other` (bounds memory and series). */
        maxTenants: z.number().int().min(1).max(10_000).default(100),
        /** Achievements counted under their own label, per tenant; the rest of that tenant's share the label `other`. */
        maxAchievements: z.number().int().min(1).max(10_000).default(100),
        /**
         * Who may read `/metrics`: `key` (default) a key with the `metrics` scope (or admin), sent by Prometheus as a
         * bearer token; `public` anyone who reaches the API.
         */
        access: z.enum(["key", "public"]).default("key"),
        /** A process without the HTTP API (`achd worker`) serves `/metrics` here (port 0: any free port; -1: not at all). */
        host: z.string().default("127.0.0.1"),
        port: z.number().int().min(-1).max(65535).default(9464),
        /** How often each process publishes its counters for the dashboard (`ach.stats.<process>`, core NATS). */
        publishInterval: Duration.default(1_000),
      })
      .strict()
      .prefault({}),
    leases: z
      .object({
        /** A partition whose owner stops renewing is free after this; takeover takes up to about 1.3 times it. */
        ttl: Duration.default(10_000),
      })
      .strict()
      .prefault({}),
    /**
     * How long a stop waits for work in flight (the batch in hand, its writes and acks) before it cuts it short:
     * waits and retries end at once, connections close, and what was not acknowledged comes again.
     */
    shutdownGrace: Duration.pipe(z.number().max(300_000, "at most 5m")).default(10_000),
    reorder: z
      .object({
        /** How long an event may wait for earlier events of its user (sequences only); also their added latency. */
        window: Duration.default(2_000),
        /** Most events held per user; beyond it the oldest is released early. */
        maxPerUser: z.number().int().min(1).default(500),
        /** Most events held per partition; beyond it the oldest are released early. */
        maxPerPartition: z.number().int().min(1).default(5_000),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /**
         * `keys` (default): NATS and HTTP require credentials (tenant nkeys, scoped API keys).
         * `none`: no credentials anywhere — local development only, refused unless every listener is on loopback.
         */
        mode: z.enum(["keys", "none"]).default("keys"),
      })
      .strict()
      .prefault({}),
    /**
     * Bounds on every event, checked the same way on HTTP, NATS, replay and
     * simulate; an event outside them goes to the DLQ with its own reason
     * (`too_complex`, `future_event`). Defaults: {@link DEFAULT_EVENT_LIMITS}.
     */
    limits: z
      .object({
        /** Deepest nesting of objects and lists in `payload` and in `attributes` (the object itself is level 1). Default 16. */
        maxDepth: z.number().int().min(1).max(64).default(DEFAULT_EVENT_LIMITS.maxDepth),
        /** Most object keys and list items in `payload` and `attributes` together. Default 2000. */
        maxKeys: z.number().int().min(1).max(100_000).default(DEFAULT_EVENT_LIMITS.maxKeys),
        /**
         * How far `occurred_at` may be ahead of the time the events stream stored the event
         * (its own timestamp, so a replay later decides the same). Default 1d.
         */
        futureSkew: Duration.default(DEFAULT_EVENT_LIMITS.futureSkew),
      })
      .strict()
      .prefault({}),
    /** Signed webhooks (README "Notifications"): delivery of each unlock to the URLs a tenant registered. */
    webhooks: z
      .object({
        /** This process takes part in delivering webhooks (one process of the deployment delivers at a time, under a lease). */
        enabled: z.boolean().default(true),
        /** How long a delivery is retried (network errors, timeouts, 5xx, 429) before it goes to the webhook dead-letter list. */
        retryFor: Duration.default(86_400_000),
        /** One request (connect, send, response headers and up to 4 KiB of body) must finish within this. */
        timeout: Duration.default(10_000),
        /** Deliver to loopback, private (RFC 1918, fc00::/7), link-local and unspecified addresses too (local development, tests). */
        allowPrivate: z.boolean().default(false),
        /** Dead letters in a row after which a webhook is disabled (re-enabled by hand); 0: never. */
        disableAfter: z.number().int().min(0).max(10_000).default(5),
        /** Requests in flight at once per webhook (each to a different user: one user's unlocks go one by one). */
        concurrency: z.number().int().min(1).max(256).default(16),
      })
      .strict()
      .prefault({}),
    log: z
      .object({ level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info") })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.http.quota.eventsPerSecond > 0 && c.http.quota.burst < c.http.maxBatch) {
      ctx.addIssue({ code: "custom", path: ["http", "quota", "burst"], message: `must be at least http.maxBatch (${c.http.maxBatch}): a full batch must fit in the burst` });
    }
    if (c.http.requestTimeout < 1000) ctx.addIssue({ code: "custom", path: ["http", "requestTimeout"], message: "must be at least 1s" });
    if (c.auth.mode === "none") {
      if (c.http.enabled && !isLoopback(c.http.host)) {
        ctx.addIssue({ code: "custom", path: ["auth", "mode"], message: `"none" is for local development only: the API would listen on ${c.http.host} without credentials (bind http.host to 127.0.0.1, or use auth.mode: keys)` });
      }
      if (!c.nats.url && !isLoopback(c.nats.embedded.host)) {
        ctx.addIssue({ code: "custom", path: ["auth", "mode"], message: `"none" is for local development only: the embedded nats-server would listen on ${c.nats.embedded.host} without credentials (bind nats.embedded.host to 127.0.0.1, or use auth.mode: keys)` });
      }
    }
    if (c.events.maxAge !== 0 && c.events.duplicateWindow > c.events.maxAge) {
      ctx.addIssue({ code: "custom", path: ["events", "duplicateWindow"], message: "must not exceed events.maxAge" });
    }
    if (c.webhooks.timeout < 100 || c.webhooks.timeout > 120_000) ctx.addIssue({ code: "custom", path: ["webhooks", "timeout"], message: "must be from 100ms to 2m" });
    if (c.webhooks.retryFor < 1000) ctx.addIssue({ code: "custom", path: ["webhooks", "retryFor"], message: "must be at least 1s" });
    if (c.worker.ackWait < 1000) ctx.addIssue({ code: "custom", path: ["worker", "ackWait"], message: "must be at least 1s" });
    if (c.reorder.window * 2 > c.worker.ackWait) {
      ctx.addIssue({ code: "custom", path: ["reorder", "window"], message: `must be at most half of worker.ackWait (${c.worker.ackWait} ms): held events must not be redelivered while they wait` });
    }
    if (c.reorder.maxPerPartition > c.worker.maxAckPending / 2) {
      ctx.addIssue({ code: "custom", path: ["reorder", "maxPerPartition"], message: `must be at most half of worker.maxAckPending (${c.worker.maxAckPending}): held events are unacknowledged` });
    }
  });

/** True for an address that only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host);
}

/** The validated configuration (durations in milliseconds). */
export type Config = z.output<typeof ConfigSchema>;
/** The configuration as written in the file. */
export type ConfigInput = z.input<typeof ConfigSchema>;

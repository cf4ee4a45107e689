/**
 * Starting and stopping the engine: the embedded server, the connections,
 * the topology, rules, workers, webhook delivery, metrics and the API.
 *
 * Longer than the house's ~300 lines on purpose: start-up is one ordered
 * sequence and stop undoes it in reverse (and a failed start undoes what it
 * had started); with both in one place, a new part is added to each at once.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { FastifyInstance } from "fastify";
import { buildApi } from "./api/mod.ts";
import { adminKeyFile, ApiKeys, StreamTokens } from "./auth/mod.ts";
import { compileConfig, type Config, type Timings } from "./config/mod.ts";
import { Kvm } from "@nats-io/kv";
import pLimit from "p-limit";
import { Buckets, checkPartitionMapping, partitionConsumers, Streams, claimStore, ensureTopology, FastKv, JsRequests, natsAuthOptions, startNatsServer, whenAnswered, type EmbeddedServer, type NatsAuthOptions } from "./nats/mod.ts";
import { prepareEmbeddedAuthorization, TenantRegistry, type AuthorizationSync, type EmbeddedAuthorization } from "./tenants/mod.ts";
import { hostname } from "node:os";
import { Coordinator, LeaseTable, Membership } from "./cluster/mod.ts";
import { DeadLetters, PartitionWorker, UnlockSink } from "./pipeline/mod.ts";
import { UnlockFanout, WebhookDelivery, WebhookRegistry } from "./notify/mod.ts";
import { DashboardFeed, EngineMetrics, publishSnapshots, serveMetrics, Stats, takeSnapshot } from "./metrics/mod.ts";
import { HistoryStore } from "./history/mod.ts";
import { RuleRegistry } from "./registry/mod.ts";
import { randomUUID } from "node:crypto";
import { checkedRuleFiles, type RuleBook } from "./rules/mod.ts";
import { SeenArchive, StateStore } from "./state/mod.ts";
import { coalesced } from "./util/coalesce.ts";
import { answerWithin, settlesWithin, sleep, type EngineState } from "./util/lifecycle.ts";
import type { Logger } from "./util/log.ts";

/** A running engine: workers, API, and (without `nats.url`) its own nats-server. */
export type Engine = {
  config: Config;
  natsUrl: string;
  /** `http://host:port` of the API, when enabled. */
  httpUrl?: string;
  /** The HTTP API itself, when enabled (for `inject` and the route list). */
  api?: FastifyInstance;
  nc: NatsConnection;
  stats: Stats;
  /** This process's Prometheus metrics (unless `metrics.enabled` is false). */
  metrics?: EngineMetrics;
  /** `http://host:port/metrics` of a process without the API (`achd worker`), when it serves one. */
  metricsUrl?: string;
  /** The partition workers running now (the partitions this process holds), by partition. */
  readonly workers: PartitionWorker[];
  /** The derived timings this engine runs with (see `compileConfig`). */
  timings: Timings;
  /** `running` once returned by {@link startEngine}; `stopping`, then `stopped` (or `failed`) after {@link stop}. */
  readonly state: EngineState;
  /**
   * Drains and stops everything: API, workers (finishing in-flight batches
   * for up to `shutdownGrace`, then every wait and retry is cut short), NATS,
   * the embedded server. Every timer of the engine is cleared when it
   * resolves.
   */
  stop(): Promise<void>;
};

/** How long a scrape waits for NATS (consumer lag, DLQ depth) before it leaves those gauges out. */
const SCRAPE_NATS_MS = 2000;

/** Options of {@link startEngine}. */
export type EngineOptions = {
  /** Called on every change of state, from `starting` on (for a supervisor, or a test). */
  onState?: (state: EngineState) => void;
};

async function connectWithin(servers: string[], timeoutMs: number, log: Logger, auth: NatsAuthOptions, retryMs: number): Promise<NatsConnection> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      // No async traces: they build two Error objects (with stack traces) per request, a quarter of a busy worker's CPU.
      return await connect({ servers, name: "achd", maxReconnectAttempts: -1, reconnectTimeWait: 250, timeout: 2000, noAsyncTraces: true, ...auth });
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`cannot reach NATS at ${servers.join(", ")}: ${(err as Error).message}`, { cause: err });
      if (attempt === 1) log.warn({ servers, err: (err as Error).message }, "NATS not reachable yet; retrying");
      await sleep(retryMs);
    }
  }
}

/**
 * Starts the engine as configured. Rules are loaded first, so an invalid
 * rule set stops start-up before anything else runs.
 */
export async function startEngine(config: Config, log: Logger, opts: EngineOptions = {}): Promise<Engine> {
  let state: EngineState = "starting";
  const setState = (s: EngineState) => {
    state = s;
    opts.onState?.(s);
  };
  setState("starting");
  try {
    const engine = await start(config, log, () => state, setState);
    setState("running");
    return engine;
  } catch (err) {
    setState("failed");
    throw err;
  }
}

async function start(config: Config, log: Logger, getState: () => EngineState, setState: (s: EngineState) => void): Promise<Engine> {
  // Every derived timing, computed once and checked; the parts get them from here.
  const timings = compileConfig(config);
  log.info({ timings }, "timings");
  // One signal from stop() down to every wait and retry: aborted once the shutdown grace is over (or start-up failed).
  const lifecycle = new AbortController();
  // Rule files are checked before anything starts, so a bad file stops start-up at once.
  const fileRules = checkedRuleFiles(config.rules).files;

  if (config.auth.mode === "none") log.warn("auth.mode is none: NATS and the HTTP API accept anyone without credentials — local development only, never expose this");
  let server: EmbeddedServer | undefined;
  let natsUrl = config.nats.url;
  // One engine per data folder (two servers on one store lose events): the lock, and a server that a dead engine
  // left on the store, are settled before anything in the folder is written.
  const claim = natsUrl ? undefined : await claimStore(config.dataDir, log);
  const stopServer = async () => {
    await server?.stop();
    claim?.release();
  };
  let authorization: EmbeddedAuthorization | undefined;
  try {
    // auth.mode keys: the embedded server starts with authorization on (the engine's key, the tenants last known).
    authorization = !natsUrl && config.auth.mode === "keys" ? prepareEmbeddedAuthorization(config, log) : undefined;
    if (!natsUrl) {
      const e = config.nats.embedded;
      server = await startNatsServer({ host: e.host, port: e.port, dataDir: config.dataDir, baseConfig: e.configFile, partitions: config.partitions, sync: e.sync, ...(authorization ? { authorization: authorization.file } : {}) });
      claim?.attach(server);
      natsUrl = server.url;
      log.info({ url: natsUrl, version: server.version, binary: server.binary, sync: e.sync, dataDir: config.dataDir, server_pid: server.process.pid }, "embedded nats-server started");
    }
  } catch (err) {
    await stopServer();
    throw err;
  }
  let nc: NatsConnection;
  let auth: NatsAuthOptions;
  try {
    auth = natsAuthOptions(config);
    nc = await connectWithin(natsUrl.split(",").map((s) => s.trim()), timings.connectTimeout, log, auth, timings.connectRetry);
  } catch (err) {
    await stopServer();
    throw err;
  }
  let control: NatsConnection | undefined;
  let authSync: AuthorizationSync | undefined;
  try {
    // A busy server answers late: these steps are retried within a bound, and a timeout is reported as one.
    const wait = { log, timeoutMs: timings.startupWait };
    const jsm = await whenAnswered("connecting to JetStream", () => jetstreamManager(nc), wait);
    const js = jetstream(nc);
    // Where events are mapped to partitions (the server's config before 2.10, the stream from 2.10 on) decides the stream's shape.
    const mapping = await checkPartitionMapping(nc, jsm, config, wait);
    const buckets = await whenAnswered("creating streams, consumers and buckets", () => ensureTopology(nc, jsm, config, { mapping, log }), wait);
    log.info({ server: nc.info?.version, partitions: config.partitions, mapping }, "streams, consumers and buckets ready");
    // Tenants added or removed (by any process) reach the embedded server's authorization through the bucket.
    if (authorization && server) authSync = await authorization.sync(new TenantRegistry(buckets.tenants), server);

    const registry = new RuleRegistry(buckets.rules);
    const synced = await registry.syncFiles(fileRules, Date.now());
    let rules: RuleBook = await registry.book();
    log.info({ versions: rules.all().length, created: synced.created, retired: synced.retired, path: config.rules }, "rules loaded");
    // Versions added through the API (by any process) reach every worker through the bucket.
    // Changes that arrive while a reload waits are covered by it (it reads the whole bucket): one reload each.
    const reload = coalesced(
      async () => {
        rules = await registry.book();
        log.info({ versions: rules.all().length }, "rules reloaded");
      },
      (err) => log.error({ err }, "rules reload failed; keeping the previous rules"),
    );
    const stopWatch = await registry.watch(reload.trigger, (err) => log.error({ err }, "the rules bucket's watch failed; versions added from now on reach this process at its next start"));

    const stats = new Stats(config.metrics.maxTenants, config.metrics.maxAchievements);
    const dlq = new DeadLetters(js, stats);
    // The hot path's reads and writes (state, seen ids, unlocks and their records) skip nats.js's per-request cost.
    const requests = new JsRequests(nc, timings.requestTimeout, timings.requestSweep);
    const deps = {
      js,
      jsm,
      store: new StateStore(await FastKv.open(buckets.state, requests), config.worker.cacheUsers, config.worker.cacheMB * 2 ** 20),
      seen: new SeenArchive(await FastKv.open(buckets.seen, requests)),
      rules: () => rules,
      unlocks: new UnlockSink(requests, stats),
      dlq,
      stats,
      log,
      config,
      timings,
      signal: lifecycle.signal,
      io: pLimit(config.worker.concurrency),
    };
    let coordinator: Coordinator | undefined;
    const id = config.worker.id ?? (hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 64) || "worker");
    // The name this process's metrics and stats snapshots carry: its worker id, or the API's host and pid.
    const processId = config.worker.enabled ? id : `api-${id}-${process.pid}`.slice(0, 64);
    const owned = () => coordinator?.workers ?? [];
    const metrics = !config.metrics.enabled ? undefined : new EngineMetrics(stats, {
      owned: () => owned().map((w) => w.partition),
      held: () => owned().reduce((n, w) => n + w.held, 0),
      cache: () => ({ hits: deps.store.hits, misses: deps.store.misses }),
      consumers: async () => {
        const mine = new Set(owned().map((w) => w.partition));
        if (mine.size === 0) return new Map();
        const all = await answerWithin(partitionConsumers(jsm), SCRAPE_NATS_MS, (err) => log.debug({ err }, "consumer gauges left out of this scrape: NATS did not answer"));
        return all && new Map([...all].filter(([k]) => mine.has(k)).map(([k, ci]) => [k, { pending: ci.num_pending, ackPending: ci.num_ack_pending }]));
      },
      dlqDepth: async () => (await answerWithin(jsm.streams.info(Streams.Dlq), SCRAPE_NATS_MS, (err) => log.debug({ err }, "DLQ gauge left out of this scrape: NATS did not answer")))?.state.messages,
    }, { process: processId });
    if (config.worker.enabled) {
      // Leases and heartbeats get their own connection: behind thousands of in-flight state writes on the
      // data connection, a renewal could wait long enough for the fence to stop a busy partition.
      control = await connectWithin(natsUrl.split(",").map((u) => u.trim()), timings.connectTimeout, log, auth, timings.connectRetry);
      const kvm = new Kvm(control);
      coordinator = new Coordinator({
        leases: new LeaseTable(await kvm.open(Buckets.Leases), id),
        members: new Membership(await kvm.open(Buckets.Workers), id),
        makeWorker: (k, fence) => new PartitionWorker({ ...deps, fence }, k),
        store: deps.store,
        config,
        timings,
        log,
        signal: lifecycle.signal,
        stats,
      });
      await coordinator.start();
      log.info({ worker: id, partitions: coordinator.workers.map((w) => w.partition) }, "workers started");
    }

    const webhooks = new WebhookRegistry({ kv: buckets.webhooks, js, jsm, config });
    let delivery: WebhookDelivery | undefined;
    if (config.webhooks.enabled) {
      // One process of the deployment delivers (the `webhooks` lease); the owner name is unique per engine instance.
      const leases = control ? await new Kvm(control).open(Buckets.Leases) : buckets.leases;
      delivery = new WebhookDelivery({ js, jsm, registry: webhooks, leases, owner: `${processId}-${randomUUID().slice(0, 8)}`, config, timings, log, stats });
      await delivery.start();
    }

    let api: FastifyInstance | undefined;
    let dashboard: DashboardFeed | undefined;
    let fanout: UnlockFanout | undefined;
    let metricsListener: Awaited<ReturnType<typeof serveMetrics>>;
    let keys: ApiKeys | undefined;
    let httpUrl: string | undefined;
    if (config.http.enabled) {
      if (config.auth.mode === "keys") {
        keys = new ApiKeys(buckets.keys);
        await keys.start((err) => log.error({ err }, "the API keys' watch failed; from now on every key is checked against the bucket"));
        // The first start of a deployment makes an admin key; the log names the file, never the key.
        if (await keys.bootstrap(adminKeyFile(config.dataDir))) log.info({ file: adminKeyFile(config.dataDir) }, "created the first admin API key; it is in this file (mode 0600)");
      }
      // One reader of the unlocks stream serves the dashboard's feed and every SSE client.
      fanout = new UnlockFanout({ js, jsm, log, backlog: 50 });
      dashboard = new DashboardFeed({ nc, unlocks: fanout, intervalMs: config.metrics.publishInterval, log });
      await dashboard.start();
      await fanout.start();
      api = await buildApi(
        { nc, js, jsm, state: new StateStore(buckets.state, 0), rules: () => rules, registry, dlq, stats, config, log: log.child({ component: "api" }), keys, history: new HistoryStore(buckets.history), buckets: { state: buckets.state, seen: buckets.seen }, tenants: new TenantRegistry(buckets.tenants), webhooks, leases: new LeaseTable(buckets.leases, "api"), members: new Membership(buckets.workers, "api"), engineState: getState, ...(metrics ? { metrics } : {}), dashboard, unlocks: fanout, streamTokens: new StreamTokens(buckets.keys) },
        log,
      );
      await api.listen({ host: config.http.host, port: config.http.port });
      const addr = api.server.address();
      httpUrl = typeof addr === "object" && addr ? `http://${config.http.host}:${addr.port}` : undefined;
      log.info({ url: httpUrl }, "HTTP API listening");
    } else if (metrics && config.metrics.port >= 0) {
      metricsListener = await serveMetrics(metrics, config.metrics.host, config.metrics.port, log);
      if (metricsListener) log.info({ url: metricsListener.url }, "serving /metrics");
    }
    // Every process tells the dashboard what it counted (the API sums them).
    const stopSnapshots = metrics ? publishSnapshots(nc, processId, config.metrics.publishInterval, () => takeSnapshot(processId, stats, metrics.unlockLatency, { worker: config.worker.enabled, api: config.http.enabled, partitions: owned().map((w) => w.partition) }), log) : () => {};

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        setState("stopping");
        log.info({ grace_ms: timings.shutdownGrace }, "stopping");
        stopSnapshots();
        dashboard?.stop();
        await api?.close().catch((err: unknown) => log.warn({ err }, "API close failed"));
        await fanout?.stop();
        await metricsListener?.close();
        keys?.stop();
        // Workers finish the batch in hand (a retry's pause ends at once: the work is given up and comes again),
        // for up to the grace. After it, every wait and retry is cut short and the connections close under what
        // is still in flight; what was not acknowledged is delivered again.
        const workersStopped = coordinator || delivery ? Promise.all([coordinator?.stop(), delivery?.stop()]) : undefined;
        if (workersStopped && !(await settlesWithin(workersStopped, timings.shutdownGrace))) {
          log.warn({ grace_ms: timings.shutdownGrace }, "work in flight did not finish within the shutdown grace; cutting it short");
        }
        lifecycle.abort();
        stopWatch();
        await reload.settled();
        await authSync?.stop();
        // A drain that fails (a subscription that cannot drain, a connection already in trouble) must not leave
        // the connection open and reconnecting: that would keep the process alive after stop.
        for (const c of [control, nc]) {
          if (!c) continue;
          await c.drain().catch((err: unknown) => log.warn({ err: String(err) }, "connection did not drain; closing it"));
          if (!c.isClosed()) await c.close().catch(() => undefined);
        }
        // Settled by now (or soon: its requests failed with the connections); a failure of it fails the stop.
        await workersStopped;
        await stopServer();
        setState("stopped");
        log.info({ stats: stats.snapshot() }, "stopped");
      })().catch(async (err: unknown) => {
        lifecycle.abort();
        // Whatever failed on the way, the embedded server does not outlive the engine.
        await stopServer();
        setState("failed");
        throw err;
      }));
    return {
      config,
      natsUrl,
      ...(httpUrl ? { httpUrl } : {}),
      ...(api ? { api } : {}),
      nc,
      stats,
      ...(metrics ? { metrics } : {}),
      ...(metricsListener ? { metricsUrl: metricsListener.url } : {}),
      get workers() {
        return coordinator?.workers ?? [];
      },
      timings,
      get state() {
        return getState();
      },
      stop,
    };
  } catch (err) {
    // Ends the loops of whatever started before the failure.
    lifecycle.abort();
    await authSync?.stop().catch(() => undefined);
    await control?.close().catch(() => undefined);
    await nc.close().catch(() => undefined);
    await stopServer();
    throw err;
  }
}

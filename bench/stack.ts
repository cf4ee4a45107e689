import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type PubAck } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { readFile } from "node:fs/promises";
import { loadConfig, type Config, type ConfigInput } from "../src/config/mod.ts";
import { eventMsgId, eventSubject, type EventInput } from "../src/events/mod.ts";
import { ensureTopology, startNatsServer, type EmbeddedServer } from "../src/nats/mod.ts";

/** A throw-away nats-server (loopback, random port, temp dir) with the engine's topology. */
export type Stack = {
  server: EmbeddedServer;
  url: string;
  dir: string;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  config: Config;
  close(): Promise<void>;
};

/** Told how much of a step is done, and of how much when known (for a progress bar). */
export type OnProgress = (done: number, total?: number) => void;

/** Starts a named phase of the benchmark (counted in `unit`); what it returns is told that phase's progress. */
export type Phase = (name: string, unit: string, total?: number) => OnProgress;

/** The benchmark's rule set. */
export const BENCH_RULES = "config/bench/rules.yaml";

/** The engine configuration the benchmark runs with: the defaults, the bench rules, no API. */
function benchConfig(url: string, dir: string, partitions: number, overrides: ConfigInput = {}): Config {
  // /metrics on a port of its own (any free one): the default 9464 may be taken on a bench machine.
  return loadConfig({}, { nats: { url }, dataDir: dir, partitions, rules: BENCH_RULES, http: { enabled: false }, log: { level: "warn" }, worker: { id: "bench" }, ...overrides, metrics: { port: 0, ...overrides.metrics } });
}

/** Starts the stack; `sync` is the server's fsync policy (see `nats.embedded.sync`). */
export async function startStack(partitions: number, sync: "default" | "always" = "default", overrides: ConfigInput = {}): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), "achd-bench-"));
  const server = await startNatsServer({ host: "127.0.0.1", port: -1, dataDir: dir, baseConfig: "config/nats-server.conf", partitions, sync });
  const nc = await connect({ servers: server.url, name: "achd-bench", noAsyncTraces: true });
  const config = benchConfig(server.url, dir, partitions, overrides);
  const jsm = await jetstreamManager(nc);
  await ensureTopology(nc, jsm, config);
  return {
    server,
    url: server.url,
    dir,
    nc,
    js: jetstream(nc),
    jsm,
    config,
    async close() {
      await nc.close().catch(() => undefined);
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const enc = new TextEncoder();

/** Publishes one event on its subject, with `Nats-Msg-Id = <tenant>:<user>:<event_id>` unless `msgId` is false. */
export function publishEvent(js: JetStreamClient, e: EventInput, msgId = true): Promise<PubAck> {
  return js.publish(eventSubject(e.tenant_id, e.user_id, e.event_type), enc.encode(JSON.stringify(e)), msgId ? { msgID: eventMsgId(e.tenant_id, e.user_id, e.event_id) } : {});
}

/** Publishes events with their scoped `Nats-Msg-Id`, keeping `window` publishes in flight. Returns events/s. */
export async function preload(js: JetStreamClient, events: Iterable<EventInput>, window = 2000, onProgress?: OnProgress): Promise<{ count: number; perSecond: number }> {
  const t0 = performance.now();
  let inFlight: Promise<unknown>[] = [];
  let count = 0;
  for (const e of events) {
    inFlight.push(publishEvent(js, e));
    count++;
    if (inFlight.length >= window) {
      await Promise.all(inFlight);
      inFlight = [];
      onProgress?.(count);
    }
  }
  await Promise.all(inFlight);
  onProgress?.(count);
  return { count, perSecond: count / ((performance.now() - t0) / 1000) };
}

/** Polls `check` every `everyMs` until it is true; returns when it became true. */
export async function until(check: () => Promise<boolean> | boolean, everyMs = 100, timeoutMs = 3_600_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("benchmark step did not finish in time");
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return performance.now();
}

/** Resident set size of a process, in bytes (Linux /proc; 0 elsewhere). */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  const kb = /VmRSS:\s+(\d+)/.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

let ticks: number | undefined;

/**
 * CPU time a process has used so far, user plus system, in seconds (Linux
 * /proc; 0 elsewhere or once it is gone). For children, whose usage
 * `process.cpuUsage` does not report.
 */
export async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  // The command name (field 2) may hold spaces: count from the last ")". utime and stime are fields 14 and 15.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const used = Number(rest[11]) + Number(rest[12]);
  if (!Number.isFinite(used)) return 0;
  ticks ??= clockTicks();
  return used / ticks;
}

/** Clock ticks per second, the unit of /proc's CPU times (100 on nearly every Linux). */
function clockTicks(): number {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
}

/** The `achd` entry point the benchmarks start as a child process. */
export const ACHD = fileURLToPath(new URL("../bin/achd.js", import.meta.url));

/** Starts `achd start` as a child with `env` added: the child, its API's URL once it listens, and a stop that waits for its exit. */
export function startAchd(stack: Stack, env: Record<string, string>): { child: ChildProcess; url: Promise<string>; stop(): Promise<void> } {
  const child = spawn(process.execPath, [ACHD, "start"], {
    env: { ...process.env, NATS_URL: stack.url, ACH_AUTH: "none", PORT: "0", ACH_RULES: BENCH_RULES, ACH_PARTITIONS: String(stack.config.partitions), ACH_LOG_JSON: "1", LOG_LEVEL: "info", ACH_METRICS_PORT: "-1", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = new Promise<string>((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("achd start did not listen within 60 s")), 60_000);
    const onData = (s: string) => {
      buf += s;
      const m = /"url":"(http:\/\/[^"]+)","msg":"HTTP API listening"/.exec(buf);
      // Found: the rest of the log is read and dropped.
      if (m) (clearTimeout(timer), child.stdout!.off("data", onData).resume(), resolve(m[1]!));
    };
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.once("exit", (code) => (clearTimeout(timer), reject(new Error(`achd start exited (${code})`))));
  });
  const stop = async () => {
    child.kill("SIGTERM");
    if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once("exit", r));
  };
  return { child, url, stop };
}

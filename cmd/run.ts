/**
 * `achd start|worker|api` — the engine as a service: everything in one
 * process, the partition workers only, or the HTTP API only. Ends on
 * SIGINT/SIGTERM after a clean stop (a second signal exits at once).
 */
import { loadConfig, type ConfigInput } from "../src/config/mod.ts";
import { startEngine, type Engine } from "../src/engine.ts";
import { createLogger } from "../src/util/log.ts";
import { parseCommand, type Outcome } from "./cli.ts";

/** What each service command runs. */
const MODES: Record<string, { overrides: ConfigInput; what: string }> = {
  start: { overrides: {}, what: "run workers, HTTP API and (without NATS_URL) an embedded nats-server" },
  worker: { overrides: { http: { enabled: false } }, what: "run partition workers only (no HTTP API)" },
  api: { overrides: { worker: { enabled: false } }, what: "run the HTTP API only (no workers)" },
};

async function run(overrides: ConfigInput): Promise<void> {
  const config = loadConfig(process.env, overrides);
  const log = createLogger(config.log.level);
  let engine: Engine | undefined;
  let signals = 0;
  // Handlers go in before start-up: a signal's default action ends the process without its exit hooks, which stop
  // the embedded server (src/nats/ownership.ts); process.exit runs them.
  const onSignal = (sig: string) => {
    if (++signals > 1 || !engine) {
      log.warn({ signal: sig }, engine ? "second signal: exiting now" : "signal during start-up: exiting now");
      process.exit(130);
    }
    log.info({ signal: sig }, "shutting down");
    engine.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  engine = await startEngine(config, log);
  // Every part is up (workers, webhook delivery, metrics, API): a signal from now on stops it gracefully.
  if (engine.httpUrl) log.info(`ready: API at ${engine.httpUrl}, NATS at ${engine.natsUrl}; Ctrl-C stops`);
  else log.info(`ready: workers, NATS at ${engine.natsUrl}${engine.metricsUrl ? `, metrics at ${engine.metricsUrl}` : ""}; Ctrl-C stops`);
}

/** Runs `achd start|worker|api`: returns "running" once the engine is up (the process then ends on a signal). */
export async function runCmd(mode: "start" | "worker" | "api", args: string[]): Promise<Outcome> {
  const { overrides, what } = MODES[mode]!;
  const usage = `usage: achd ${mode}\n  ${what}\nConfiguration: config/achd.yaml (or ACH_CONFIG) and environment variables; see README.md.`;
  if (!parseCommand({ name: `achd ${mode}`, usage, options: {} }, args)) return 0;
  await run(overrides);
  return "running";
}

/**
 * achd — the achievement engine's command line.
 *
 *   achd start                 everything in one process (embedded nats-server unless NATS_URL)
 *   achd worker                partition workers only (no HTTP API)
 *   achd api                   HTTP API only (no workers)
 *   achd rules validate [path] check a rules file or folder
 *   achd partition <tenant> <user>   the partition a user's events go to
 *   achd nats-config           the server config lines a 2.9 server needs
 */
import { parseArgs } from "node:util";
import { ConfigError, loadConfig, type ConfigInput } from "../src/config/mod.ts";
import { startEngine } from "../src/engine.ts";
import { partitionMapping, partitionOf } from "../src/events/mod.ts";
import { loadRules, RulesError } from "../src/rules/mod.ts";
import { createLogger } from "../src/util/log.ts";

const USAGE = `usage: achd <command>
  start                      run workers, HTTP API and (without NATS_URL) an embedded nats-server
  worker                     run partition workers only
  api                        run the HTTP API only
  rules validate [path]      validate rules (default: the configured rules path)
  partition <tenant> <user>  print the partition of a user
  nats-config                print the mapping a nats-server 2.9 config needs
Configuration: config/achd.yaml (or ACH_CONFIG) and environment variables; see README.md.`;

async function run(overrides: ConfigInput): Promise<void> {
  const config = loadConfig(process.env, overrides);
  const log = createLogger(config.log.level);
  const engine = await startEngine(config, log);
  let signals = 0;
  const onSignal = (sig: string) => {
    if (++signals > 1) {
      log.warn("second signal: exiting now");
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
  if (engine.httpUrl) log.info(`ready: API at ${engine.httpUrl}, NATS at ${engine.natsUrl}; Ctrl-C stops`);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "start":
      await run({});
      return -1;
    case "worker":
      await run({ http: { enabled: false } });
      return -1;
    case "api":
      await run({ worker: { enabled: false } });
      return -1;
    case "rules": {
      if (rest[0] !== "validate") break;
      const path = rest[1] ?? loadConfig().rules;
      const book = loadRules(path);
      console.log(`${path}: ${book.all().length} rules, all valid`);
      return 0;
    }
    case "partition": {
      const [tenant, user] = rest;
      if (!tenant || !user) break;
      const P = loadConfig().partitions;
      console.log(partitionOf(tenant, user, P));
      return 0;
    }
    case "nats-config": {
      const { values } = parseArgs({ args: rest, options: { partitions: { type: "string" } } });
      const P = values.partitions ? Number(values.partitions) : loadConfig().partitions;
      const m = partitionMapping(P);
      console.log(`mappings {\n  "${m.src}": "${m.dest}"\n}`);
      return 0;
    }
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return 0;
  }
  console.error(USAGE);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof RulesError) console.error(err.message);
    else console.error(err instanceof Error ? `achd: ${err.message}` : err);
    process.exit(1);
  },
);

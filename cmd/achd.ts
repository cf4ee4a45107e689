/**
 * achd — the achievement engine's command line.
 *
 *   achd start                 everything in one process (embedded nats-server unless NATS_URL)
 *   achd worker                partition workers only (no HTTP API)
 *   achd api                   HTTP API only (no workers)
 *   achd rules validate [path] check a rules file or folder
 *   achd partition <tenant> <user>   the partition a user's events go to
 *   achd nats-config [--partitions N] [--engine-nkey PUB]   the server config lines an external server needs
 *   achd tenants add|remove|list   tenant credentials on NATS (cmd/tenants.ts)
 *   achd keys create|list|revoke   HTTP API keys (cmd/keys.ts)
 *   achd dlq list|show|redrive dead-letter tools
 *   achd simulate --rules <path> --events <file.jsonl> [--progress] [--at TIME]
 *   achd status                partition owners, lag, lease ages
 *   achd replay [--rules PATH] [--from SEQ] [--threads N]   re-evaluate the stored stream in memory; compare with recorded unlocks
 *   achd bench [--smoke] [--only a,b] …       the benchmark (docs/benchmarks.md)
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { clusterStatus, LeaseTable, Membership } from "../src/cluster/mod.ts";
import { Buckets, natsAuthOptions } from "../src/nats/mod.ts";
import { printAuthorization, tenantsCmd, UsageError } from "./tenants.ts";
import { keysCmd } from "./keys.ts";
import { listDeadLetters, redriveDeadLetter, showDeadLetter } from "../src/pipeline/mod.ts";
import { ConfigError, loadConfig, type Config, type ConfigInput } from "../src/config/mod.ts";
import { startEngine, type Engine } from "../src/engine.ts";
import { partitionMapping, partitionOf } from "../src/events/mod.ts";
import { loadRules, RulesError } from "../src/rules/mod.ts";
import { simulate, unlockLine, userProgress } from "../src/sim/mod.ts";
import { DEFAULT_OPTIONS, runBench, SECTIONS, SMOKE_OPTIONS, type Section } from "../src/bench/mod.ts";
import { reconcile, replayStream } from "../src/replay/mod.ts";
import { createLogger } from "../src/util/log.ts";

const USAGE = `usage: achd <command>
  start                      run workers, HTTP API and (without NATS_URL) an embedded nats-server
  worker                     run partition workers only
  api                        run the HTTP API only
  rules validate [path]      validate rules (default: the configured rules path)
  partition <tenant> <user>  print the partition of a user
  nats-config [--partitions N] [--engine-nkey PUB]
                             print the mapping a nats-server 2.9 config needs and the authorization
                             block (engine user, registered tenants) for an external server
  tenants add <tenant> [--out FILE]
                             register a tenant on NATS; print its nkey seed once (or write FILE, mode 0600)
  tenants remove <tenant>    remove a tenant: its NATS credential stops working
  tenants list               registered tenants and their public keys
  keys create (--admin | --tenant T --scope S…) [--name N] [--out FILE]
                             make an HTTP API key (shown once); scopes: events:write, read, rules:write
  keys list [--tenant T]     keys by id and prefix, scopes, creation and last use (never a key)
  keys revoke <id>           revoke a key in every API process within a second
  status                     which worker owns which partition, lag per partition, lease ages
  simulate --rules PATH --events FILE.jsonl [--progress] [--at TIME]
                             run rules over events offline; print unlocks (and progress) as JSON lines
  dlq list [--tenant T] [--limit N] [--from SEQ]   list dead letters (JSON lines)
  dlq show <seq>             one dead letter with its body and headers
  dlq redrive <seq>… [--body FILE]   publish dead letters again and remove them
  replay [--rules PATH] [--from SEQ] [--threads N]
                             re-evaluate the stored events in memory (writes nothing); report the
                             unlocks those rules give that are not recorded, and the reverse;
                             N evaluating threads (default: the cores but one, at most 4)
  bench [--smoke] [--only SECTIONS] [--events N] [--users N] [--memory-users N] [--memory-heap MB|0] [--seconds S] [--out DIR]
                             the benchmark: ${SECTIONS.join(", ")} (docs/benchmarks.md)
Configuration: config/achd.yaml (or ACH_CONFIG) and environment variables; see README.md.`;

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
  if (engine.httpUrl) log.info(`ready: API at ${engine.httpUrl}, NATS at ${engine.natsUrl}; Ctrl-C stops`);
}

/** Connects a CLI command to the configured server (the embedded default's address when none is set). */
function cliConnect(config: Config, name: string): Promise<NatsConnection> {
  const url = config.nats.url ?? `nats://${config.nats.embedded.host}:${config.nats.embedded.port}`;
  return connect({ servers: url.split(",").map((u) => u.trim()), name, ...natsAuthOptions(config) });
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
      const { values } = parseArgs({ args: rest, options: { partitions: { type: "string" }, "engine-nkey": { type: "string" } } });
      const config = loadConfig();
      const P = values.partitions ? Number(values.partitions) : config.partitions;
      const m = partitionMapping(P);
      console.log(`mappings {\n  "${m.src}": "${m.dest}"\n}`);
      return printAuthorization(config, values["engine-nkey"], cliConnect);
    }
    case "tenants":
      return tenantsCmd(rest, cliConnect);
    case "keys":
      return keysCmd(rest, cliConnect);
    case "dlq":
      return dlq(rest);
    case "simulate":
      return simulateCmd(rest);
    case "status":
      return statusCmd();
    case "replay":
      return replayCmd(rest);
    case "bench":
      return benchCmd(rest);
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return 0;
  }
  console.error(USAGE);
  return 2;
}

function simulateCmd(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: { rules: { type: "string" }, events: { type: "string" }, progress: { type: "boolean" }, at: { type: "string" } },
  });
  if (!values.events) {
    console.error("achd simulate: --events FILE.jsonl is required (one event per line); --rules defaults to the configured rules");
    return 2;
  }
  const config = loadConfig();
  const book = loadRules(values.rules ?? config.rules);
  const lines = readFileSync(values.events, "utf8").split("\n");
  const events: unknown[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      events.push(JSON.parse(line));
    } catch (err) {
      console.error(JSON.stringify({ line: i + 1, rejected: "bad_json", message: (err as Error).message }));
    }
  });
  const sim = simulate(events, book, 1000, config.dedup.fingerprints, { limits: config.limits });
  for (const r of sim.rejected) console.error(JSON.stringify({ index: r.index, rejected: r.rejection.code, message: r.rejection.message }));
  for (const u of sim.unlocks) console.log(JSON.stringify(unlockLine(u)));
  if (values.progress) {
    const last = Math.max(0, ...events.map((e) => Date.parse((e as { occurred_at?: string }).occurred_at ?? "")).filter(Number.isFinite));
    const now = values.at ? Date.parse(values.at) : last;
    if (!Number.isFinite(now)) {
      console.error(`achd simulate: --at ${values.at} is not a timestamp`);
      return 2;
    }
    for (const p of userProgress(sim, book, now)) console.log(JSON.stringify({ progress: p }));
  }
  return 0;
}

async function statusCmd(): Promise<number> {
  const config = loadConfig();
  const nc = await cliConnect(config, "achd-status");
  try {
    const jsm = await jetstreamManager(nc);
    const kvm = new Kvm(nc);
    const [leases, workers] = await Promise.all([kvm.open(Buckets.Leases), kvm.open(Buckets.Workers)]);
    const s = await clusterStatus(jsm, new LeaseTable(leases, "status"), new Membership(workers, "status"), config.partitions, Date.now());
    console.log(`workers: ${s.workers.join(", ") || "(none)"}`);
    console.log("partition  owner                 lease age  pending  in flight  ack floor");
    for (const p of s.partitions) {
      const age = p.lease_age_ms === null ? "-" : `${(p.lease_age_ms / 1000).toFixed(1)}s`;
      console.log(`${String(p.partition).padStart(9)}  ${(p.owner ?? "(free)").padEnd(20)}  ${age.padStart(9)}  ${String(p.pending ?? "-").padStart(7)}  ${String(p.ack_pending ?? "-").padStart(9)}  ${String(p.ack_floor ?? "-").padStart(9)}`);
    }
    return 0;
  } finally {
    await nc.close();
  }
}

async function dlq(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { tenant: { type: "string" }, limit: { type: "string" }, from: { type: "string" }, body: { type: "string" } },
  });
  const config = loadConfig();
  const nc = await cliConnect(config, "achd-dlq");
  try {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    if (sub === "list") {
      const list = await listDeadLetters(js, {
        ...(values.tenant ? { tenant: values.tenant } : {}),
        ...(values.limit ? { limit: Number(values.limit) } : {}),
        ...(values.from ? { from: Number(values.from) } : {}),
      });
      for (const d of list) console.log(JSON.stringify(d));
      return 0;
    }
    const seqs = positionals.map(Number);
    if (seqs.length === 0 || seqs.some((n) => !Number.isInteger(n) || n < 1)) {
      console.error(`achd dlq ${sub ?? ""}: give one or more dead-letter sequence numbers (see achd dlq list)`);
      return 2;
    }
    if (sub === "show") {
      for (const seq of seqs) console.log(JSON.stringify(await showDeadLetter(jsm, seq), null, 2));
      return 0;
    }
    if (sub === "redrive") {
      const body = values.body ? readFileSync(values.body) : undefined;
      for (const seq of seqs) console.log(JSON.stringify(await redriveDeadLetter(js, jsm, seq, body)));
      return 0;
    }
    console.error(USAGE);
    return 2;
  } finally {
    await nc.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof RulesError || err instanceof UsageError) console.error(err.message);
    else console.error(err instanceof Error ? `achd: ${err.message}` : err);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);

async function benchCmd(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      smoke: { type: "boolean" },
      only: { type: "string" },
      events: { type: "string" },
      users: { type: "string" },
      "memory-users": { type: "string" },
      "memory-heap": { type: "string" },
      seconds: { type: "string" },
      out: { type: "string" },
    },
  });
  const base = values.smoke ? SMOKE_OPTIONS : DEFAULT_OPTIONS;
  const count = (name: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return fallback;
    const x = Number(v);
    if (!Number.isInteger(x) || x < 1) throw new ConfigError(`achd bench: --${name} must be a positive integer, not ${JSON.stringify(v)}`);
    return x;
  };
  const only = values.only?.split(",").map((s) => s.trim()) ?? [...base.sections];
  const unknown = only.filter((s) => !(SECTIONS as readonly string[]).includes(s));
  if (unknown.length) throw new ConfigError(`achd bench: --only: unknown section ${unknown.join(", ")} (sections: ${SECTIONS.join(", ")})`);
  await runBench({
    ...base,
    workload: { ...base.workload, events: count("events", values.events, base.workload.events), users: count("users", values.users, base.workload.users) },
    memoryUsers: count("memory-users", values["memory-users"], base.memoryUsers),
    memoryHeapMB: values["memory-heap"] === "0" ? 0 : count("memory-heap", values["memory-heap"], base.memoryHeapMB),
    loadSeconds: count("seconds", values.seconds, base.loadSeconds),
    sections: only as Section[],
    out: values.out ?? base.out,
  });
  return 0;
}

async function replayCmd(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { rules: { type: "string" }, from: { type: "string" }, threads: { type: "string" } } });
  if (values.threads !== undefined && !/^[1-9]\d*$/.test(values.threads)) {
    console.error(`achd replay: --threads ${values.threads} is not a positive whole number`);
    return 2;
  }
  const config = loadConfig();
  const book = loadRules(values.rules ?? config.rules);
  const nc = await cliConnect(config, "achd-replay");
  try {
    const t0 = performance.now();
    const r = await replayStream(jetstream(nc), await jetstreamManager(nc), {
      book,
      maxBytes: config.events.maxBytes,
      partitions: config.partitions,
      limits: config.limits,
      recentIds: config.worker.recentIds,
      fingerprints: config.dedup.fingerprints,
      ...(values.from ? { fromSeq: Number(values.from) } : {}),
      ...(values.threads ? { threads: Number(values.threads) } : {}),
    });
    const seconds = (performance.now() - t0) / 1000;
    const diff = await reconcile(nc, r.unlocks);
    console.log(JSON.stringify({ from_seq: r.fromSeq, to_seq: r.toSeq, events: r.events, rejected: r.rejected, duplicates: r.duplicates, users: r.users, threads: r.threads, unlocks: r.unlocks.length, recorded: diff.recorded, seconds: Number(seconds.toFixed(3)), events_per_second: Math.round(r.events / seconds) }));
    for (const u of diff.notRecorded) console.log(JSON.stringify({ would_unlock: unlockLine(u) }));
    for (const k of diff.recordedOnly) console.log(JSON.stringify({ recorded_only: k }));
    return 0;
  } finally {
    await nc.close();
  }
}

/**
 * achd — the achievement engine's command line. This file only routes a
 * command to its file (loaded on demand, so `achd start` loads neither the
 * simulator nor the benchmark) and applies the exit-code rule of cli.ts:
 * 0 ok, 1 failure, 2 usage. `achd <command> --help` prints a command's usage.
 */
import { cliConnect, failure, type Outcome } from "./cli.ts";

const USAGE = `usage: achd <command> [--help]
  start                      run workers, HTTP API and (without NATS_URL) an embedded nats-server
  worker                     run partition workers only
  api                        run the HTTP API only
  rules validate [path]      validate rules (default: the configured rules path)
  rules shadow <file|rule-id@version> [--rule ID] [--tenant T] [--json] [--samples N] [--from-file F] [--threads N]
                             try a candidate rule version over the stored events beside the versions in force
                             (writes nothing but its report): who would gain, lose or move an unlock
  partition <tenant> <user>  print the partition of a user
  nats-config [--partitions N] [--engine-nkey PUB]
                             print the mapping a nats-server 2.9 config needs and the authorization
                             block (engine user, registered tenants) for an external server
  tenants add <tenant> [--out FILE]
                             register a tenant on NATS; print its nkey seed once (or write FILE, mode 0600)
  tenants remove <tenant>    remove a tenant: its NATS credential stops working
  tenants list               registered tenants and their public keys
  keys create (--admin | --scope metrics | --tenant T --scope S…) [--name N] [--out FILE]
                             make an HTTP API key (shown once); tenant scopes: events:write, read, rules:write, webhooks;
                             metrics (no tenant): reads /metrics only, for Prometheus
  keys list [--tenant T]     keys by id and prefix, scopes, creation and last use (never a key)
  keys revoke <id>           revoke a key in every API process within a second
  webhooks add <tenant> <url> [--achievement A]… | list <tenant> | remove|enable|disable <tenant> <id>
                             a tenant's signed webhooks; add prints the signing secret once
  status                     which worker owns which partition, lag per partition, lease ages
  config [--timings]         print the validated configuration, or every timing derived from it
  simulate --rules PATH --events FILE.jsonl [--progress [--no-progress]] [--at TIME]
                             run rules over events offline; print unlocks (and progress) as JSON lines;
                             with --progress also how far the run is, on stderr
  dlq list [--tenant T] [--limit N] [--from SEQ]   list dead letters (JSON lines)
  dlq show <seq>             one dead letter with its body and headers
  dlq redrive <seq>… [--body FILE]   publish dead letters again and remove them
  replay [--rules PATH] [--from SEQ] [--threads N] [--no-progress]
                             re-evaluate the stored events in memory (writes nothing); report the
                             unlocks those rules give that are not recorded, and the reverse;
                             N evaluating threads (default: the cores but one, at most 4)
  backfill <rule-id[@version]> [--tenant T] [--from TIME] [--rate N] [--events-rate N] [--from-file F] [--threads N] [--json]
                             record the unlocks history implies under a stored rule version and that are not
                             recorded yet: backdated, quiet (backfill: true), at most N unlocks/s (default 200),
                             exactly once; Ctrl-C stops it, the same command again resumes
  users rebuild <tenant> <user> [--force] [--from-file F] [--json]
                             recompute a user's stored state from their events in the log (recorded unlocks kept)
  users as-of <tenant> <user> <time> [--from-file F]
                             what a user had at an event time, computed from the log (JSON)
  history export [--tenant T] [--user U] [--out FILE]
                             every stored event as JSON lines (a history export, for --from-file)
  history horizon            how far back the events stream goes, and what an event costs in it
  bench [--smoke] [--only SECTIONS] [--events N] [--users N] [--memory-users N] [--memory-heap MB|0] [--seconds S] [--out DIR] [--no-progress]
                             the benchmark (sections: achd bench --help; docs/benchmarks.md)
replay, rules shadow, backfill, history export and bench (and simulate with --progress) show how far
they are on stderr: a bar with rate and ETA on a terminal, else a line every 2 s; --no-progress turns
it off. Results stay on stdout.
Exit codes: 0 ok, 1 failure, 2 wrong usage, 130 cancelled with Ctrl-C (rules shadow, backfill).
Configuration: config/achd.yaml (or ACH_CONFIG) and environment variables; see README.md.`;

/** Each command and the file that runs it. */
const COMMANDS: Record<string, (args: string[]) => Promise<Outcome> | Outcome> = {
  start: async (a) => (await import("./run.ts")).runCmd("start", a),
  worker: async (a) => (await import("./run.ts")).runCmd("worker", a),
  api: async (a) => (await import("./run.ts")).runCmd("api", a),
  rules: async (a) => (await import("./rules.ts")).rulesCmd(a),
  partition: async (a) => (await import("./partition.ts")).partitionCmd(a),
  "nats-config": async (a) => (await import("./nats-config.ts")).natsConfigCmd(a),
  tenants: async (a) => (await import("./tenants.ts")).tenantsCmd(a, cliConnect),
  keys: async (a) => (await import("./keys.ts")).keysCmd(a, cliConnect),
  webhooks: async (a) => (await import("./webhooks.ts")).webhooksCmd(a, cliConnect),
  dlq: async (a) => (await import("./dlq.ts")).dlqCmd(a),
  simulate: async (a) => (await import("./simulate.ts")).simulateCmd(a),
  status: async (a) => (await import("./status.ts")).statusCmd(a),
  config: async (a) => (await import("./config.ts")).configCmd(a),
  replay: async (a) => (await import("./replay.ts")).replayCmd(a),
  backfill: async (a) => (await import("./backfill.ts")).backfillCmd(a),
  users: async (a) => (await import("./users.ts")).usersCmd(a),
  history: async (a) => (await import("./history.ts")).historyCmd(a),
  bench: async (a) => (await import("./bench.ts")).benchCmd(a),
};

async function main(argv: string[]): Promise<Outcome> {
  const [cmd, ...rest] = argv;
  if (cmd === "help" || cmd === "--help" || cmd === "-h") {
    console.log(USAGE);
    return 0;
  }
  const command = cmd !== undefined && Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!command) {
    if (cmd !== undefined) console.error(`achd: unknown command ${JSON.stringify(cmd)}`);
    console.error(USAGE);
    return 2;
  }
  return command(rest);
}

/**
 * Exits once everything written to stdout and stderr is out: on a pipe they are written asynchronously, and
 * process.exit() at once would cut a slow reader's output short. (The exit itself ends what a command left open.)
 */
function exitAfterOutput(code: number): void {
  process.exitCode = code;
  let left = 2;
  const done = () => --left === 0 && process.exit(code);
  process.stdout.write("", done);
  process.stderr.write("", done);
}

main(process.argv.slice(2)).then(
  (outcome) => {
    if (outcome !== "running") exitAfterOutput(outcome);
  },
  (err: unknown) => exitAfterOutput(failure(err)),
);

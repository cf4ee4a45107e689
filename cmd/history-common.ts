/**
 * What the history commands share (`achd rules shadow`, `achd backfill`,
 * `achd users`, `achd history`): the connection with the buckets they
 * read, checked arguments (times, ids, export files) and cancellation on
 * Ctrl-C.
 */
import { existsSync, statSync } from "node:fs";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { loadConfig, type Config } from "../src/config/mod.ts";
import { ID_TOKEN } from "../src/events/mod.ts";
import { HistoryStore } from "../src/history/mod.ts";
import { Buckets, openBucket } from "../src/nats/mod.ts";
import { RuleRegistry } from "../src/registry/mod.ts";
import { parseInstant, RULE_ID, type RuleBook } from "../src/rules/mod.ts";
import { cliConnect, UsageError } from "./cli.ts";

/** A connected history command: the config, JetStream, and the buckets opened on demand. */
export type HistoryContext = {
  config: Config;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** A bucket of the engine (created when missing, as the engine does). */
  bucket(name: string): Promise<KV>;
  /** The rule book of the registry (bucket `ach_rules`): the versions the workers run. */
  book(): Promise<RuleBook>;
  /** Where reports are kept (bucket `ach_history`). */
  store(): Promise<HistoryStore>;
};

/** Connects as `name`, runs `fn`, and closes the connection (after a failure too). */
export async function withHistory<T>(name: string, fn: (h: HistoryContext) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const nc = await cliConnect(config, name);
  try {
    const kvm = new Kvm(nc);
    const bucket = (b: string) => openBucket(kvm, config, b);
    return await fn({
      config,
      js: jetstream(nc),
      jsm: await jetstreamManager(nc),
      bucket,
      book: async () => new RuleRegistry(await bucket(Buckets.Rules)).book(),
      store: async () => new HistoryStore(await bucket(Buckets.History)),
    });
  } finally {
    await nc.close();
  }
}

/** An RFC 3339 time with a zone (e.g. 2026-04-13T10:00:00Z) as epoch ms; `what` names the option or argument. */
export function timeArg(command: string, what: string, text: string): number {
  const t = parseInstant(text);
  if (t === undefined) throw new UsageError(`${command}: ${what} must be an RFC 3339 time with a zone, e.g. 2026-04-13T10:00:00Z, not ${JSON.stringify(text)}`);
  return t;
}

/** A tenant or user id as events carry it (no dots or wildcards: it becomes a subject token). */
export function idArg(command: string, what: string, text: string): string {
  if (!ID_TOKEN.test(text)) throw new UsageError(`${command}: ${what} must be 1-128 characters of A-Z a-z 0-9 _ - starting with a letter or digit, not ${JSON.stringify(text)}`);
  return text;
}

/** `rule-id` or `rule-id@version`. */
export function ruleRefArg(command: string, text: string, versionRequired: boolean): { id: string; version?: number } {
  const m = /^([^@]*)(?:@(\d+))?$/.exec(text);
  const version = m?.[2] === undefined ? undefined : Number(m[2]);
  if (!m || !RULE_ID.test(m[1]!) || (version !== undefined && (!Number.isSafeInteger(version) || version < 1)) || (versionRequired && version === undefined)) {
    throw new UsageError(`${command}: expected ${versionRequired ? "rule-id@version" : "rule-id or rule-id@version"} (a rule id of a-z 0-9 _ -, a version ≥ 1), not ${JSON.stringify(text)}`);
  }
  return version === undefined ? { id: m[1]! } : { id: m[1]!, version };
}

/** `--from-file F`: a history export (as `achd history export` writes it) that must exist. */
export function exportFileArg(command: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  if (!existsSync(path) || !statSync(path).isFile()) throw new UsageError(`${command}: --from-file ${path}: no such file (give a history export written by achd history export)`);
  return path;
}

/**
 * Turns the first Ctrl-C (SIGINT) into an aborted signal, so a long run
 * stops cleanly and reports what it did; a second one exits at once (130).
 * Call `dispose()` when the run ends.
 */
export function cancelOnInterrupt(command: string, what: string): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onSigint = () => {
    if (ac.signal.aborted) process.exit(130);
    process.stderr.write(`\n${command}: cancelling — ${what} (Ctrl-C again to quit at once)\n`);
    ac.abort();
  };
  process.on("SIGINT", onSigint);
  return { signal: ac.signal, dispose: () => process.off("SIGINT", onSigint) };
}

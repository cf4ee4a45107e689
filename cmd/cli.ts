/**
 * What every `achd` command shares: the argument parser (over
 * `node:util` `parseArgs`, with checked integers and `--help`), the usage
 * error, the connection to the configured server, and the exit-code rule:
 *
 *   0  done
 *   1  failed (a server, a file, a rule or the config said no)
 *   2  used wrongly (unknown command or option, a missing or malformed argument)
 *   130  cancelled with Ctrl-C (SIGINT) by a command that stops cleanly on it
 */
import { parseArgs } from "node:util";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ConfigError, type Config } from "../src/config/mod.ts";
import { natsAuthOptions } from "../src/nats/mod.ts";
import { RulesError } from "../src/rules/mod.ts";

/** A command's exit code: 0 ok, 1 failure, 2 usage, 130 cancelled (Ctrl-C). */
export type ExitCode = 0 | 1 | 2 | 130;

/** What a command gives back: an exit code, or `"running"` for a service that ends on a signal. */
export type Outcome = ExitCode | "running";

/** A CLI command was used wrongly; the message says how to use it. Exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Connects a CLI command to the configured server with the engine's credential. */
export type CliConnect = (config: Config, name: string) => Promise<NatsConnection>;

/** Connects a CLI command to the configured server (the embedded default's address when none is set). */
export const cliConnect: CliConnect = (config, name) => {
  const url = config.nats.url ?? `nats://${config.nats.embedded.host}:${config.nats.embedded.port}`;
  return connect({ servers: url.split(",").map((u) => u.trim()), name, ...natsAuthOptions(config) });
};

/**
 * The exit-code rule for a thrown error: a usage error is 2, anything else 1.
 * Prints the message on stderr (known errors as they are, others prefixed `achd:`).
 */
export function failure(err: unknown): ExitCode {
  if (err instanceof ConfigError || err instanceof RulesError || err instanceof UsageError) console.error(err.message);
  else console.error(err instanceof Error ? `achd: ${err.message}` : err);
  return err instanceof UsageError ? 2 : 1;
}

/** One declared option. `integer` is given as a string and checked to be a whole number in [min, max]. */
export type OptionSpec =
  | { type: "boolean" }
  | { type: "string"; multiple?: boolean }
  | { type: "integer"; min: number; max?: number };

type ValueOf<O extends OptionSpec> = O extends { type: "boolean" }
  ? boolean
  : O extends { type: "integer" }
    ? number
    : O extends { multiple: true }
      ? string[]
      : string;

/** `--no-progress`, for the commands that report progress on stderr (cmd/progress.ts). */
export const PROGRESS_OPTIONS = { "no-progress": { type: "boolean" } } as const satisfies Record<string, OptionSpec>;

/** The parsed options: absent ones are `undefined`. */
export type Values<S extends Record<string, OptionSpec>> = { [K in keyof S]?: ValueOf<S[K]> };

/** A command's arguments: its name (as in messages), usage text, options and how many positionals it takes. */
export type CommandSpec<S extends Record<string, OptionSpec>> = {
  /** e.g. "achd dlq list" */
  name: string;
  /** Printed by `--help` (stdout) and after a usage error (stderr). */
  usage: string;
  options: S;
  /** Positional arguments allowed, inclusive; default none. */
  positionals?: { min: number; max: number };
};

/**
 * Checks that `text` is a whole number in [min, max] (decimal digits only:
 * no sign, exponent, hex or spaces); `what` names it in the message
 * (e.g. "--partitions", "sequence number").
 */
export function integerArg(command: string, what: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `a whole number ≥ ${min}` : `a whole number from ${min} to ${max}`;
    throw new UsageError(`${command}: ${what} must be ${range}, not ${JSON.stringify(text)}`);
  }
  return n;
}

/**
 * Parses `args` by `spec`: unknown options, a missing option value, a bad
 * integer and a wrong number of positionals throw a {@link UsageError}
 * naming what was wrong. With `--help` (or `-h`) prints the usage on stdout
 * and returns `undefined`: the command then exits 0.
 */
export function parseCommand<S extends Record<string, OptionSpec>>(spec: CommandSpec<S>, args: string[]): { values: Values<S>; positionals: string[] } | undefined {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = { help: { type: "boolean", short: "h" } };
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = o.type === "boolean" ? { type: "boolean" } : { type: "string", ...(o.type === "string" && o.multiple ? { multiple: true } : {}) };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    // node:util names the option in its message ("Unknown option '--x'", "Option '--limit <value>' argument missing").
    const message = (err as Error).message.replace(/\. To specify a positional argument.*$/s, "");
    throw new UsageError(`${spec.name}: ${message}\n${spec.usage}`);
  }
  if (parsed.values.help) {
    console.log(spec.usage);
    return undefined;
  }
  const values: Record<string, unknown> = {};
  for (const [name, o] of Object.entries(spec.options)) {
    const v = parsed.values[name];
    if (v === undefined) continue;
    values[name] = o.type === "integer" ? integerArg(spec.name, `--${name}`, v as string, o.min, o.max) : v;
  }
  const { min, max } = spec.positionals ?? { min: 0, max: 0 };
  const n = parsed.positionals.length;
  if (n < min || n > max) {
    const want = min === max ? `${min}` : max === Infinity ? `at least ${min}` : min === 0 ? `at most ${max}` : `${min} to ${max}`;
    const extra = n > max ? ` (unexpected ${JSON.stringify(parsed.positionals[max])})` : "";
    throw new UsageError(`${spec.name}: takes ${want} argument${(max === Infinity ? min : max) === 1 ? "" : "s"}, got ${n}${extra}\n${spec.usage}`);
  }
  return { values: values as Values<S>, positionals: parsed.positionals };
}

/**
 * Routes `achd <group> <sub> …` to the sub-command's handler. No sub-command
 * or an unknown one is a usage error; `--help` alone prints the group's usage.
 */
export async function dispatchGroup(group: string, usage: string, args: string[], subs: Record<string, (args: string[]) => Promise<ExitCode>>): Promise<ExitCode> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h" || sub === "help") {
    console.log(usage);
    return 0;
  }
  const handler = sub === undefined ? undefined : Object.hasOwn(subs, sub) ? subs[sub] : undefined;
  if (!handler) throw new UsageError(`${group}: ${sub === undefined ? "give a sub-command" : `unknown sub-command ${JSON.stringify(sub)}`} (${Object.keys(subs).join(", ")})\n${usage}`);
  return handler(rest);
}

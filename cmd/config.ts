/**
 * `achd config [--timings]` — the configuration as the engine would run
 * with it (file, environment and defaults, validated), or with `--timings`
 * every timing derived from it (see src/config/timings.ts). A configuration
 * that breaks a relation between timings fails here as it would at start.
 */
import { compileConfig, loadConfig } from "../src/config/mod.ts";
import { parseCommand, type ExitCode } from "./cli.ts";

const USAGE = `usage: achd config [--timings]
  print the validated configuration (JSON), or with --timings every timing derived from it, in ms`;

/** Runs `achd config …`; returns the exit code. */
export function configCmd(args: string[]): ExitCode {
  const a = parseCommand({ name: "achd config", usage: USAGE, options: { timings: { type: "boolean" } } }, args);
  if (!a) return 0;
  const config = loadConfig();
  if (!a.values.timings) {
    console.log(JSON.stringify(config, null, 2));
    return 0;
  }
  const timings = compileConfig(config);
  const width = Math.max(...Object.keys(timings).map((k) => k.length));
  // All in ms, but pullAhead: a number of messages.
  for (const [name, v] of Object.entries(timings)) console.log(`${name.padEnd(width)}  ${String(Math.round(v)).padStart(8)} ${name === "pullAhead" ? "messages" : "ms"}`);
  return 0;
}

/**
 * `achd rules validate [path]` — checks a rules file or folder without running anything;
 * `achd rules shadow …` — tries a candidate rule version over the stored history (cmd/shadow.ts).
 */
import { loadConfig } from "../src/config/mod.ts";
import { loadRules } from "../src/rules/mod.ts";
import { dispatchGroup, parseCommand, type ExitCode } from "./cli.ts";

const VALIDATE_USAGE = `usage: achd rules validate [path]
  validate a rules file or folder (default: the configured rules path);
  exits 0 when every rule is valid, 1 naming each invalid rule and its file`;
const USAGE = `usage: achd rules validate [path]
       achd rules shadow <file|rule-id@version> [--rule ID] [--tenant T] [--json] [--samples N] [--from-file F] [--threads N] [--no-progress]`;

function validate(args: string[]): ExitCode {
  const a = parseCommand({ name: "achd rules validate", usage: VALIDATE_USAGE, options: {}, positionals: { min: 0, max: 1 } }, args);
  if (!a) return 0;
  const path = a.positionals[0] ?? loadConfig().rules;
  const book = loadRules(path); // RulesError (exit 1) names each problem's file, rule and field
  console.log(`${path}: ${book.all().length} rules, all valid`);
  return 0;
}

/** Runs `achd rules <sub> …`; returns the exit code. */
export function rulesCmd(args: string[]): Promise<ExitCode> {
  return dispatchGroup("achd rules", USAGE, args, { validate: async (a) => validate(a), shadow: async (a) => (await import("./shadow.ts")).shadowCmd(a) });
}

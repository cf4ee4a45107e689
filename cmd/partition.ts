/** `achd partition <tenant> <user>` — the partition a user's events go to under the configured partition count. */
import { loadConfig } from "../src/config/mod.ts";
import { partitionOf } from "../src/events/mod.ts";
import { parseCommand, type ExitCode } from "./cli.ts";

const USAGE = `usage: achd partition <tenant> <user>
  print the partition (0 … partitions-1) of a user's events under the configured partition count`;

/** Runs `achd partition …`; returns the exit code. */
export function partitionCmd(args: string[]): ExitCode {
  const a = parseCommand({ name: "achd partition", usage: USAGE, options: {}, positionals: { min: 2, max: 2 } }, args);
  if (!a) return 0;
  const [tenant, user] = a.positionals as [string, string];
  console.log(partitionOf(tenant, user, loadConfig().partitions));
  return 0;
}

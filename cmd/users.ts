/**
 * `achd users rebuild|as-of` — one user's history, from the events log:
 * their stored state rebuilt (when it is corrupt, or a backfill left it
 * behind), or what they had at an event time.
 */
import { Buckets } from "../src/nats/mod.ts";
import { UnlockRecords } from "../src/pipeline/mod.ts";
import { HistoryIncompleteError, rebuildUser, userAsOf, type RebuildReport } from "../src/history/mod.ts";
import { dispatchGroup, parseCommand, type ExitCode } from "./cli.ts";
import { evalOptionsOf } from "../src/replay/mod.ts";
import { exportFileArg, idArg, timeArg, withHistory } from "./history-common.ts";

const REBUILD_USAGE = `usage: achd users rebuild <tenant> <user> [--force] [--from-file F] [--json]
  recompute a user's stored state (bucket ach_state) from their events in the log, under the rule
  versions in force; recorded unlocks are kept, unlocks the log gives without a record are delivered.
  Refuses (exit 1, saying what would be lost) when the events stream no longer holds all history
  --force        rebuild from what the stream holds anyway
  --from-file F  read a history export (achd history export) first, then the stream after it
  --json         the report as JSON instead of a summary`;
const AS_OF_USAGE = `usage: achd users as-of <tenant> <user> <time> [--from-file F]
  what a user had unlocked, and how far along the rest was, at an event time (RFC 3339, e.g.
  2026-04-13T10:00:00Z), computed from their events in the log; prints JSON
  --from-file F  read a history export (achd history export) first, then the stream after it`;
const USAGE = `usage: achd users rebuild <tenant> <user> [--force] [--from-file F] [--json]
       achd users as-of <tenant> <user> <time> [--from-file F]`;

const list = (xs: readonly string[]) => (xs.length ? xs.join(", ") : "none");

/** A rebuild report for people. */
function summary(r: RebuildReport): string {
  const c = r.coverage;
  return [
    `rebuilt ${r.tenant_id}/${r.user_id}: state revision ${r.revision} (report ${r.id})`,
    `  previous:          ${r.previous}`,
    `  events:            ${c.events} read${c.events ? ` (seq ${c.from_seq}–${c.to_seq})` : ""}, ${c.rejected} rejected, ${c.duplicates} duplicates${c.file ? `, from ${c.file} then the stream` : ""}${c.forced ? "; forced: the stream does not hold all history" : ""}`,
    `  rules changed:     ${list(r.rules_changed)}`,
    `  unlocked added:    ${list(r.unlocked_added)}`,
    `  unlocked dropped:  ${list(r.unlocked_dropped)}`,
    `  kept from records: ${list(r.kept_from_records)}`,
    `  delivered:         ${list(r.delivered)}`,
  ].join("\n");
}

async function rebuild(args: string[]): Promise<ExitCode> {
  const name = "achd users rebuild";
  const a = parseCommand({ name, usage: REBUILD_USAGE, options: { force: { type: "boolean" }, "from-file": { type: "string" }, json: { type: "boolean" } }, positionals: { min: 2, max: 2 } }, args);
  if (!a) return 0;
  const tenant = idArg(name, "<tenant>", a.positionals[0]!);
  const user = idArg(name, "<user>", a.positionals[1]!);
  const file = exportFileArg(name, a.values["from-file"]);
  return withHistory<ExitCode>("achd-users-rebuild", async (h) => {
    const deps = { js: h.js, jsm: h.jsm, state: await h.bucket(Buckets.State), seen: await h.bucket(Buckets.Seen), records: new UnlockRecords(h.js, h.jsm), store: await h.store() };
    const book = await h.book();
    let r: RebuildReport;
    try {
      r = await rebuildUser(deps, tenant, user, { ...evalOptionsOf(h.config), book, file, force: a.values.force });
    } catch (err) {
      if (!(err instanceof HistoryIncompleteError)) throw err;
      console.error(`${name}: ${err.message}`);
      return 1;
    }
    console.log(a.values.json ? JSON.stringify(r) : summary(r));
    return 0;
  });
}

async function asOf(args: string[]): Promise<ExitCode> {
  const name = "achd users as-of";
  const a = parseCommand({ name, usage: AS_OF_USAGE, options: { "from-file": { type: "string" } }, positionals: { min: 3, max: 3 } }, args);
  if (!a) return 0;
  const tenant = idArg(name, "<tenant>", a.positionals[0]!);
  const user = idArg(name, "<user>", a.positionals[1]!);
  const at = timeArg(name, "<time>", a.positionals[2]!);
  const file = exportFileArg(name, a.values["from-file"]);
  return withHistory<ExitCode>("achd-users-as-of", async (h) => {
    const r = await userAsOf(h.js, h.jsm, tenant, user, at, { ...evalOptionsOf(h.config), book: await h.book(), file });
    console.log(JSON.stringify(r));
    return 0;
  });
}

/** Runs `achd users <sub> …`; returns the exit code. */
export function usersCmd(args: string[]): Promise<ExitCode> {
  return dispatchGroup("achd users", USAGE, args, { rebuild, "as-of": asOf });
}

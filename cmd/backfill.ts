/**
 * `achd backfill <rule-id[@version]>` — records the unlocks the stored
 * history implies under a stored rule version and that are not recorded
 * yet: backdated, marked `backfill: true` (quiet), at a bounded rate,
 * exactly once across crashes and reruns (a checkpoint in `ach_history`).
 */
import { Buckets } from "../src/nats/mod.ts";
import { UnlockRecords } from "../src/pipeline/mod.ts";
import { BACKFILL_RATE, backfill, backfillMarkdown, ConcurrentRunError, storedVersion, type BackfillReport } from "../src/history/mod.ts";
import { evalOptionsOf } from "../src/replay/mod.ts";
import { parseCommand, PROGRESS_OPTIONS, type ExitCode } from "./cli.ts";
import { cancelOnInterrupt, exportFileArg, idArg, ruleRefArg, timeArg, withHistory } from "./history-common.ts";
import { progressUnless, type Progress } from "./progress.ts";

const USAGE = `usage: achd backfill <rule-id[@version]> [--tenant T] [--from TIME] [--rate N] [--events-rate N] [--from-file F] [--threads N] [--json] [--no-progress]
  record the unlocks the stored events imply under a stored rule version and that are not recorded
  yet: backdated to the events that earned them, marked backfill: true (no notifications unless a
  webhook asks for backfills), each exactly once; unlocks are never revoked. Prints a report (markdown)
  rule-id[@version]  the version to apply (default: the latest; refused if it retires the rule) of
                     --tenant's rule when the tenant has its own, else of the shared rule
  --tenant T         only T's events (and T's version of the rule, when it has one)
  --from TIME        only events stored from this RFC 3339 time on (e.g. 2026-04-01T00:00:00Z)
  --rate N           unlocks recorded per second, at most, 1 … 100000 (default 200)
  --events-rate N    events read per second, at most (default: no limit)
  --from-file F      read a history export (achd history export) first, then the stream after it
  --threads N        evaluating threads, 1 … 64 (default: the cores but one, at most 4)
  --json             the report as JSON instead of markdown
  --no-progress      no progress on stderr
Ctrl-C stops it (exit 130) and keeps its checkpoint: the same command again resumes where it stopped.`;

const NAME = "achd backfill";

/** Runs `achd backfill …`; returns the exit code. */
export async function backfillCmd(args: string[]): Promise<ExitCode> {
  const a = parseCommand(
    {
      name: NAME,
      usage: USAGE,
      options: {
        tenant: { type: "string" },
        from: { type: "string" },
        rate: { type: "integer", min: BACKFILL_RATE.min, max: BACKFILL_RATE.max },
        "events-rate": { type: "integer", min: 1 },
        "from-file": { type: "string" },
        threads: { type: "integer", min: 1, max: 64 },
        json: { type: "boolean" },
        ...PROGRESS_OPTIONS,
      },
      positionals: { min: 1, max: 1 },
    },
    args,
  );
  if (!a) return 0;
  const { json, threads, "no-progress": quiet } = a.values;
  const ref = ruleRefArg(NAME, a.positionals[0]!, false);
  const tenant = a.values.tenant === undefined ? undefined : idArg(NAME, "--tenant", a.values.tenant);
  const fromTime = a.values.from === undefined ? undefined : timeArg(NAME, "--from", a.values.from);
  const file = exportFileArg(NAME, a.values["from-file"]);
  const rate = a.values.rate ?? BACKFILL_RATE.default;
  const eventsRate = a.values["events-rate"];

  return withHistory<ExitCode>("achd-backfill", async (h) => {
    const book = await h.book();
    const found = storedVersion(book, tenant ? [tenant, "*"] : ["*"], ref.id, ref.version);
    if (typeof found === "string") {
      console.error(`${NAME}: ${found}`);
      return 1;
    }
    // With the state bucket: each backfilled unlock is marked in its user's state too, so the workers never unlock it again.
    const deps = { js: h.js, jsm: h.jsm, records: new UnlockRecords(h.js, h.jsm), state: await h.bucket(Buckets.State), store: await h.store() };
    let progress: Progress = progressUnless(quiet, { label: "backfill", unit: "events" });
    let recording = false;
    const cancel = cancelOnInterrupt(NAME, "the checkpoint is kept: run the same command again to resume");
    let report: BackfillReport;
    try {
      report = await backfill(deps, {
        ...evalOptionsOf(h.config),
        book,
        scope: found.scope,
        version: found.version,
        unlocksPerSecond: rate,
        eventsPerSecond: eventsRate,
        fromTime,
        tenant,
        file,
        threads,
        signal: cancel.signal,
        onProgress: (done, total) => progress.set(done, total),
        onRecord: (done, total) => {
          // The evaluation's report ends where recording starts: one closing line each.
          if (!recording) {
            recording = true;
            progress.stop();
            progress = progressUnless(quiet, { label: "backfill record", unit: "unlocks", total });
          }
          progress.set(done, total);
        },
      });
    } catch (err) {
      if (!(err instanceof ConcurrentRunError)) throw err;
      console.error(`${NAME}: ${err.message}`);
      return 1;
    } finally {
      progress.stop();
      cancel.dispose();
    }
    process.stdout.write(json ? `${JSON.stringify(report)}\n` : backfillMarkdown(report));
    if (report.status === "cancelled") {
      console.error(`${NAME}: cancelled after ${report.recorded + report.already_recorded} of ${report.implied} unlocks; the checkpoint is kept: run the same command again to resume`);
      return 130;
    }
    return 0;
  });
}

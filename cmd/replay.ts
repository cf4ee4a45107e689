/**
 * `achd replay [--rules PATH] [--from SEQ] [--threads N] [--no-progress]` — re-evaluates
 * the stored events in memory (writes nothing) and compares with the recorded unlocks.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { loadConfig } from "../src/config/mod.ts";
import { evalOptionsOf, reconcile, replayStream } from "../src/replay/mod.ts";
import { loadRules } from "../src/rules/mod.ts";
import { unlockLine } from "../src/sim/mod.ts";
import { cliConnect, parseCommand, PROGRESS_OPTIONS, type ExitCode } from "./cli.ts";
import { progressUnless } from "./progress.ts";

const USAGE = `usage: achd replay [--rules PATH] [--from SEQ] [--threads N] [--no-progress]
  re-evaluate the stored events in memory (writes nothing); report the
  unlocks those rules give that are not recorded, and the reverse
  --rules PATH   a rules file or folder (default: the configured rules)
  --from SEQ     from this events-stream sequence number on (≥ 1)
  --threads N    evaluating threads, 1 … 64 (default: the cores but one, at most 4)
  --no-progress  no progress on stderr (default: a bar on a terminal, else a line every 2 s)`;

/** Runs `achd replay …`; returns the exit code. */
export async function replayCmd(args: string[]): Promise<ExitCode> {
  const a = parseCommand(
    { name: "achd replay", usage: USAGE, options: { rules: { type: "string" }, from: { type: "integer", min: 1 }, threads: { type: "integer", min: 1, max: 64 }, ...PROGRESS_OPTIONS } },
    args,
  );
  if (!a) return 0;
  const { rules, from, threads, "no-progress": quiet } = a.values;
  const config = loadConfig();
  const book = loadRules(rules ?? config.rules);
  const nc = await cliConnect(config, "achd-replay");
  const progress = progressUnless(quiet, { label: "replay", unit: "events" });
  try {
    const t0 = performance.now();
    const [js, jsm] = [jetstream(nc), await jetstreamManager(nc)];
    const r = await replayStream(js, jsm, {
      ...evalOptionsOf(config),
      book,
      fromSeq: from,
      threads,
      onProgress: (done, total) => progress.set(done, total),
    });
    progress.stop();
    const seconds = (performance.now() - t0) / 1000;
    const diff = await reconcile(js, jsm, r.unlocks);
    console.log(JSON.stringify({ from_seq: r.fromSeq, to_seq: r.toSeq, events: r.events, rejected: r.rejected, duplicates: r.duplicates, users: r.users, threads: r.threads, unlocks: r.unlocks.length, recorded: diff.recorded, seconds: Number(seconds.toFixed(3)), events_per_second: Math.round(r.events / seconds) }));
    for (const u of diff.notRecorded) console.log(JSON.stringify({ would_unlock: unlockLine(u) }));
    for (const k of diff.recordedOnly) console.log(JSON.stringify({ recorded_only: k }));
    return 0;
  } finally {
    // After a failure too: a terminal bar's timer would keep the process alive.
    progress.stop();
    await nc.close();
  }
}

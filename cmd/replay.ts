/**
 * `achd replay [--rules PATH] [--from SEQ] [--threads N]` — re-evaluates the
 * stored events in memory (writes nothing) and compares with the recorded unlocks.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { loadConfig } from "../src/config/mod.ts";
import { reconcile, replayStream } from "../src/replay/mod.ts";
import { loadRules } from "../src/rules/mod.ts";
import { unlockLine } from "../src/sim/mod.ts";
import { cliConnect, parseCommand, type ExitCode } from "./cli.ts";

const USAGE = `usage: achd replay [--rules PATH] [--from SEQ] [--threads N]
  re-evaluate the stored events in memory (writes nothing); report the
  unlocks those rules give that are not recorded, and the reverse
  --rules PATH   a rules file or folder (default: the configured rules)
  --from SEQ     from this events-stream sequence number on (≥ 1)
  --threads N    evaluating threads, 1 … 64 (default: the cores but one, at most 4)`;

/** Runs `achd replay …`; returns the exit code. */
export async function replayCmd(args: string[]): Promise<ExitCode> {
  const a = parseCommand(
    { name: "achd replay", usage: USAGE, options: { rules: { type: "string" }, from: { type: "integer", min: 1 }, threads: { type: "integer", min: 1, max: 64 } } },
    args,
  );
  if (!a) return 0;
  const { rules, from, threads } = a.values;
  const config = loadConfig();
  const book = loadRules(rules ?? config.rules);
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
      ...(from ? { fromSeq: from } : {}),
      ...(threads ? { threads } : {}),
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

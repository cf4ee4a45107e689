/** `achd simulate --events FILE.jsonl [--rules PATH] [--progress [--no-progress]] [--at TIME]` — rules over events, offline. */
import { readFileSync } from "node:fs";
import { loadConfig } from "../src/config/mod.ts";
import { loadRules } from "../src/rules/mod.ts";
import { simulate, unlockLine, userProgress, type Simulation } from "../src/sim/mod.ts";
import { parseCommand, PROGRESS_OPTIONS, UsageError, type ExitCode } from "./cli.ts";
import { NO_PROGRESS, progressUnless } from "./progress.ts";

const USAGE = `usage: achd simulate --events FILE.jsonl [--rules PATH] [--progress [--no-progress]] [--at TIME]
  run rules over events offline; print unlocks (and progress) as JSON lines
  --events FILE  one event per line (required)
  --rules PATH   a rules file or folder (default: the configured rules)
  --progress     also print each user's progress, and show on stderr how far the run is
                 (a bar on a terminal, else a line every 2 s)
  --no-progress  with --progress: the users' progress only, nothing on stderr
  --at TIME      progress as of this time (default: the last event's occurred_at)`;

/** Runs `achd simulate …`; returns the exit code. */
export function simulateCmd(args: string[]): ExitCode {
  const a = parseCommand(
    { name: "achd simulate", usage: USAGE, options: { rules: { type: "string" }, events: { type: "string" }, progress: { type: "boolean" }, at: { type: "string" }, ...PROGRESS_OPTIONS } },
    args,
  );
  if (!a) return 0;
  const { values } = a;
  if (!values.events) throw new UsageError("achd simulate: --events FILE.jsonl is required (one event per line); --rules defaults to the configured rules");
  const at = values.at === undefined ? undefined : Date.parse(values.at);
  if (at !== undefined && !Number.isFinite(at)) throw new UsageError(`achd simulate: --at ${values.at} is not a timestamp`);
  const config = loadConfig();
  const book = loadRules(values.rules ?? config.rules);
  const lines = readFileSync(values.events, "utf8").split("\n");
  const events: unknown[] = [];
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    try {
      events.push(JSON.parse(line));
    } catch (err) {
      console.error(JSON.stringify({ line: i + 1, rejected: "bad_json", message: (err as Error).message }));
    }
  });
  // Only with --progress: without it stderr keeps carrying nothing but the rejections (JSON lines).
  const progress = values.progress ? progressUnless(values["no-progress"], { label: "simulate", total: events.length, unit: "events" }) : NO_PROGRESS;
  let sim: Simulation;
  try {
    sim = simulate(events, book, 1000, config.dedup.fingerprints, { limits: config.limits, onProgress: (done, total) => progress.set(done, total) });
  } finally {
    progress.stop();
  }
  for (const r of sim.rejected) console.error(JSON.stringify({ index: r.index, rejected: r.rejection.code, message: r.rejection.message }));
  for (const u of sim.unlocks) console.log(JSON.stringify(unlockLine(u)));
  if (values.progress) {
    // A loop, not Math.max(...all): hundreds of thousands of arguments overflow the stack.
    let last = 0;
    for (const e of events) {
      const t = Date.parse((e as { occurred_at?: string }).occurred_at ?? "");
      if (t > last) last = t;
    }
    for (const p of userProgress(sim, book, at ?? last)) console.log(JSON.stringify({ progress: p }));
  }
  return 0;
}

/** `achd simulate --events FILE.jsonl [--rules PATH] [--progress] [--at TIME]` — rules over events, offline. */
import { readFileSync } from "node:fs";
import { loadConfig } from "../src/config/mod.ts";
import { loadRules } from "../src/rules/mod.ts";
import { simulate, unlockLine, userProgress } from "../src/sim/mod.ts";
import { parseCommand, UsageError, type ExitCode } from "./cli.ts";

const USAGE = `usage: achd simulate --events FILE.jsonl [--rules PATH] [--progress] [--at TIME]
  run rules over events offline; print unlocks (and progress) as JSON lines
  --events FILE  one event per line (required)
  --rules PATH   a rules file or folder (default: the configured rules)
  --progress     also print each user's progress
  --at TIME      progress as of this time (default: the last event's occurred_at)`;

/** Runs `achd simulate …`; returns the exit code. */
export function simulateCmd(args: string[]): ExitCode {
  const a = parseCommand(
    { name: "achd simulate", usage: USAGE, options: { rules: { type: "string" }, events: { type: "string" }, progress: { type: "boolean" }, at: { type: "string" } } },
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
  const sim = simulate(events, book, 1000, config.dedup.fingerprints, { limits: config.limits });
  for (const r of sim.rejected) console.error(JSON.stringify({ index: r.index, rejected: r.rejection.code, message: r.rejection.message }));
  for (const u of sim.unlocks) console.log(JSON.stringify(unlockLine(u)));
  if (values.progress) {
    const last = Math.max(0, ...events.map((e) => Date.parse((e as { occurred_at?: string }).occurred_at ?? "")).filter(Number.isFinite));
    for (const p of userProgress(sim, book, at ?? last)) console.log(JSON.stringify({ progress: p }));
  }
  return 0;
}

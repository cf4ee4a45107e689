/**
 * `achd bench [--smoke | --quick] [--only SECTIONS] …` — the benchmark
 * (docs/benchmarks.md). Loaded only by `cmd/bench.ts`, for this command,
 * from a source checkout: the benchmark is not part of the library, the
 * build or the container image.
 */
import type { BenchEntry } from "../cmd/bench.ts";
import { parseCommand, PROGRESS_OPTIONS, UsageError, type ExitCode } from "../cmd/cli.ts";
import { NO_PROGRESS, startProgress, type Progress } from "../cmd/progress.ts";
import { DEFAULT_OPTIONS, QUICK_OPTIONS, runBench, SECTIONS, SMOKE_OPTIONS, type Section } from "./mod.ts";
import type { Phase } from "./stack.ts";

const USAGE = `usage: achd bench [--smoke | --quick] [--only SECTIONS] [--events N] [--users N] [--memory-users N] [--memory-heap MB|0] [--seconds S] [--sync default|always] [--out DIR] [--no-progress]
  the benchmark (docs/benchmarks.md)
  --smoke            the small variant (seconds, for tests)
  --quick            the headline sections on smaller streams (ceiling, engine, counts, latency
                     at 1,000 events/s for 10 s): a few minutes
  --only SECTIONS    comma-separated, of: ${SECTIONS.join(", ")}
  --events N         events in the workload (≥ 1)
  --users N          users in the workload (≥ 1)
  --memory-users N   distinct users through the memory run's worker (≥ 1)
  --memory-heap MB   the memory run's --max-old-space-size; 0 for none
  --seconds S        seconds per offered load in the latency section (≥ 1)
  --sync POLICY      the server's fsync policy: default (background) or always (nats-server 2.10+);
                     ACH_NATS_SERVER picks the server
  --out DIR          where the results go
  --no-progress      no progress on stderr (default: each phase's progress, as a bar on a terminal,
                     else a line every 2 s)`;

/** Runs `achd bench …`; returns the exit code. */
export const benchCmd: BenchEntry["benchCmd"] = async (args: string[]): Promise<ExitCode> => {
  const a = parseCommand(
    {
      name: "achd bench",
      usage: USAGE,
      options: {
        smoke: { type: "boolean" },
        quick: { type: "boolean" },
        only: { type: "string" },
        events: { type: "integer", min: 1 },
        users: { type: "integer", min: 1 },
        "memory-users": { type: "integer", min: 1 },
        "memory-heap": { type: "integer", min: 0 },
        seconds: { type: "integer", min: 1 },
        sync: { type: "string" },
        out: { type: "string" },
        ...PROGRESS_OPTIONS,
      },
    },
    args,
  );
  if (!a) return 0;
  const { values } = a;
  if (values.smoke && values.quick) throw new UsageError("achd bench: --smoke and --quick are two variants; give one");
  const base = values.smoke ? SMOKE_OPTIONS : values.quick ? QUICK_OPTIONS : DEFAULT_OPTIONS;
  const only = values.only?.split(",").map((s) => s.trim()) ?? [...base.sections];
  const unknown = only.filter((s) => !(SECTIONS as readonly string[]).includes(s));
  if (unknown.length) throw new UsageError(`achd bench: --only: unknown section ${unknown.join(", ")} (sections: ${SECTIONS.join(", ")})`);
  if (values.sync !== undefined && values.sync !== "default" && values.sync !== "always") throw new UsageError(`achd bench: --sync: ${values.sync} is not default or always`);
  const opts = {
    ...base,
    workload: { ...base.workload, events: values.events ?? base.workload.events, users: values.users ?? base.workload.users },
    memoryUsers: values["memory-users"] ?? base.memoryUsers,
    memoryHeapMB: values["memory-heap"] ?? base.memoryHeapMB,
    loadSeconds: values.seconds ?? base.loadSeconds,
    sections: only as Section[],
    out: values.out ?? base.out,
    ...(values.sync ? { sync: values.sync as "default" | "always" } : {}),
  };
  // One report per phase; the next phase or a line on stdout ends the current one (on a terminal they share the screen).
  let current: Progress = NO_PROGRESS;
  const say = (line: string) => {
    current.stop();
    current = NO_PROGRESS;
    console.log(line);
  };
  const phase: Phase = (name, unit, total) => {
    current.stop();
    const p = (current = startProgress({ label: `bench ${name}`, unit, total }));
    return (done, t) => p.set(done, t);
  };
  try {
    await runBench(opts, say, values["no-progress"] ? undefined : phase);
  } finally {
    current.stop();
  }
  return 0;
};

/**
 * Experiment: where the engine's time goes.
 *
 *   node --import tsx bench/experiments/profile-engine.ts [count|bench] [events] [users] [out.cpuprofile]
 *
 * Starts a bench stack, preloads the workload, measures the bare one-ack
 * consumer, then runs the engine over the same stream with the V8 CPU
 * profiler on (in-process, only while the engine drains), and prints the
 * top self-time entries by function and by file.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { countWorkload, COUNT_RULES } from "../counts.ts";
import { measureCeiling } from "../ceiling.ts";
import { measureThroughput } from "../engine.ts";
import { preload, startStack } from "../stack.ts";
import { DEFAULT_WORKLOAD, workload } from "../workload.ts";

const kind = process.argv[2] ?? "count";
const events = Number(process.argv[3] ?? 200_000);
const users = Number(process.argv[4] ?? 20_000);
const out = process.argv[5] ?? "/tmp/engine.cpuprofile";
const stack = await startStack(8, "default", kind === "count" ? { rules: COUNT_RULES } : {});
try {
  const src = kind === "count" ? countWorkload({ events, users, seed: 11 }) : workload({ ...DEFAULT_WORKLOAD, events, users });
  const pub = await preload(stack.js, src);
  console.log(`published ${pub.count} at ${pub.perSecond.toFixed(0)}/s`);
  const ceil = await measureCeiling(stack, "ack-each", pub.count);
  console.log(`bare one-ack consumer: ${ceil.perSecond.toFixed(0)}/s`);
  const s = new Session();
  s.connect();
  if (process.env.HEAP) {
    // Allocation sampling instead: where the garbage comes from.
    await s.post("HeapProfiler.enable");
    await s.post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    await measureThroughput(stack, pub.count);
    const { profile: heap } = await s.post("HeapProfiler.stopSampling");
    const bytes = new Map<string, number>();
    let all = 0;
    const walk = (n: typeof heap.head, stack: string[]) => {
      const f = n.callFrame;
      const key = `${f.functionName || "(anon)"} ${f.url.replace(/^.*\/(src|node_modules)\//, "$1/")}:${f.lineNumber + 1}`;
      all += n.selfSize;
      // Attributed to the nearest frame of the engine's own code.
      const own = f.url.includes("/src/") ? key : stack.at(-1) ?? key;
      bytes.set(own, (bytes.get(own) ?? 0) + n.selfSize);
      for (const c of n.children) walk(c, f.url.includes("/src/") ? [...stack, key] : stack);
    };
    walk(heap.head, []);
    console.log(`allocated ${(all / 2 ** 20).toFixed(0)} MB (sampled), by nearest engine frame:`);
    for (const [k, b] of [...bytes].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${((100 * b) / all).toFixed(1).padStart(5)}%  ${k}`);
    process.exit(0);
  }
  await s.post("Profiler.enable");
  await s.post("Profiler.setSamplingInterval", { interval: 200 });
  await s.post("Profiler.start");
  const r = await measureThroughput(stack, pub.count);
  const { profile } = await s.post("Profiler.stop");
  writeFileSync(out, JSON.stringify(profile));
  console.log(`engine: ${r.perSecond.toFixed(0)}/s (${(r.perSecond / ceil.perSecond).toFixed(2)}× bare), ${r.unlocks} unlocks, ${r.writesPerEvent.toFixed(3)} writes/event, conflicts ${r.conflicts}`);
  const self = new Map<string, number>();
  const byFile = new Map<string, number>();
  const dt = new Map<number, number>();
  profile.samples?.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (profile.timeDeltas?.[i] ?? 0)));
  let total = 0;
  for (const n of profile.nodes) {
    const t = dt.get(n.id) ?? 0;
    total += t;
    const f = n.callFrame;
    const file = (f.url || "(native)").replace(/^.*\/(node_modules\/(@[^/]+\/)?[^/]+|src|bench)\//, "$1/");
    const key = `${f.functionName || "(anon)"} ${file}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + t);
    byFile.set(file, (byFile.get(file) ?? 0) + t);
  }
  const top = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, t]) => `${((100 * t) / total).toFixed(1).padStart(5)}%  ${k}`).join("\n");
  console.log(`\nself time by function (of ${(total / 1e6).toFixed(1)} s):\n${top(self, 30)}\n\nby file:\n${top(byFile, 25)}`);
} finally {
  await stack.close();
}

#!/usr/bin/env node
// Keeps the CPU busy, to run tests the way a loaded CI box runs them:
//
//   node scripts/cpu-hog.mjs [workers] [seconds]
//
// `workers` busy threads (default: one per core) spin for `seconds`
// (default 120, at most 3600) and the process then exits by itself, so a
// forgotten hog never outlives the run it was started for.
import { availableParallelism } from "node:os";
import { Worker, isMainThread, workerData } from "node:worker_threads";

if (isMainThread) {
  const n = Number.parseInt(process.argv[2] ?? "", 10);
  const s = Number.parseFloat(process.argv[3] ?? "");
  const workers = Number.isInteger(n) && n > 0 ? n : availableParallelism();
  // Bounded whatever is asked: this is a test tool, not a daemon.
  const seconds = Number.isFinite(s) && s > 0 ? Math.min(s, 3600) : 120;
  const until = Date.now() + seconds * 1000;
  console.error(`cpu-hog: ${workers} busy worker(s) for ${seconds} s (pid ${process.pid})`);
  for (let i = 0; i < workers; i++) new Worker(new URL(import.meta.url), { workerData: { until } });
  // The process ends when every worker has returned; this timer is the backstop if one does not.
  setTimeout(() => process.exit(0), seconds * 1000 + 2000).unref();
} else {
  const { until } = workerData;
  let x = 0;
  // Check the clock only every million steps: the loop should be pure CPU, not syscalls.
  while (Date.now() < until) for (let i = 0; i < 1e6; i++) x = (x * 31 + i) | 0;
  if (x === 42) console.error("");
}

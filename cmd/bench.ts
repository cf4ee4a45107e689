/**
 * `achd bench …` — the benchmark lives in `bench/` at the top of a source
 * checkout, outside the library: the build (tsconfig.build.json), the npm
 * package and the container image leave it out. This file finds it at run
 * time by a computed path, so no other command loads it and `tsc` does not
 * follow it into the build; from an install without it, the command says so.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ExitCode } from "./cli.ts";

/** What `bench/cli.ts` provides (it declares itself against this type, so the two cannot drift apart). */
export type BenchEntry = { benchCmd(args: string[]): Promise<ExitCode> };

/** The benchmark is not in this install (the image, an npm install). */
export class BenchUnavailableError extends Error {
  override name = "BenchUnavailableError";
}

/** Runs `achd bench …` from the checkout's `bench/`; returns the exit code. */
export async function benchCmd(args: string[]): Promise<ExitCode> {
  // A URL, not a literal specifier: tsc and the static import graph stop here.
  const entry = new URL("../bench/cli.ts", import.meta.url);
  if (!existsSync(fileURLToPath(entry))) {
    throw new BenchUnavailableError(`achd bench runs from a source checkout (npm run bench); ${fileURLToPath(entry)} is not in this install`);
  }
  const bench = (await import(entry.href)) as BenchEntry;
  return bench.benchCmd(args);
}

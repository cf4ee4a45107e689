import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fixture } from "./engine.ts";

const BIN = fileURLToPath(new URL("../../bin/achd.js", import.meta.url));

/** An engine in its own process (`achd <command>`), for kill -9 tests. */
export type ChildEngine = {
  process: ChildProcess;
  output: string[];
  /** Resolves when the process logs `text`. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
};

/** Starts `achd <command>` against `natsUrl` with the test fixtures' config and rules. */
export function startChild(natsUrl: string, command = "worker", env: Record<string, string> = {}): ChildEngine {
  const child = spawn(process.execPath, [BIN, command], {
    env: {
      ...process.env,
      NATS_URL: natsUrl,
      ACH_CONFIG: fixture("achd.test.yaml"),
      ACH_RULES: fixture("rules"),
      ACH_LOG_JSON: "1",
      LOG_LEVEL: "info",
      // Workers serve /metrics on a port of their own: any free one, so that several can run side by side.
      ACH_METRICS_PORT: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  // ACH_TEST_CHILD_LOGS=<dir> keeps every child's log (one file per worker id): a run that fails under load is
  // explained by its lease lines, which are gone once the test's processes are.
  const keep = process.env.ACH_TEST_CHILD_LOGS ? join(process.env.ACH_TEST_CHILD_LOGS, `${env.ACH_WORKER_ID ?? command}-${child.pid}.log`) : undefined;
  if (keep) appendFileSync(keep, `${JSON.stringify({ time: Date.now(), msg: "spawned (test helper)" })}\n`);
  const waiters: { text: string; resolve: () => void }[] = [];
  const onLine = (line: string) => {
    if (!line) return;
    output.push(line);
    if (keep) appendFileSync(keep, `${line}\n`);
    for (const w of [...waiters]) if (line.includes(w.text)) (waiters.splice(waiters.indexOf(w), 1), w.resolve());
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    // A read may end in the middle of a line (a busy test process lets the pipe fill up): keep the tail for the
    // next read, per stream, or a lease line is lost to JSON.parse and a waitFor misses its text.
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (s: string) => {
      const lines = (partial + s).split("\n");
      partial = lines.pop()!;
      lines.forEach(onLine);
    });
    stream.on("end", () => onLine(partial));
  }
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return {
    process: child,
    output,
    waitFor(text, timeoutMs = 30_000) {
      if (output.some((l) => l.includes(text))) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`child did not log "${text}" in ${timeoutMs} ms:\n${output.slice(-20).join("\n")}`)), timeoutMs);
        waiters.push({ text, resolve: () => (clearTimeout(t), resolve()) });
      });
    },
    async kill(signal = "SIGKILL") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

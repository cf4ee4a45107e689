import { spawn, type ChildProcess } from "node:child_process";
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
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const waiters: { text: string; resolve: () => void }[] = [];
  const onData = (b: Buffer) => {
    for (const line of b.toString("utf8").split("\n")) {
      if (!line) continue;
      output.push(line);
      for (const w of [...waiters]) if (line.includes(w.text)) (waiters.splice(waiters.indexOf(w), 1), w.resolve());
    }
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
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

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { partitionMapping } from "../events/mod.ts";
import { natsServerBinary } from "./server-binary.ts";

/** Options of a nats-server child process. */
export type EmbeddedOptions = {
  host: string;
  /** -1 picks a free port. */
  port: number;
  /** Data folder: the effective config and JetStream's store go here. */
  dataDir: string;
  /** Base config file whose text is copied into the effective config. */
  baseConfig?: string;
  /** Partition count for the 2.9 subject mapping (omit for no mapping). */
  partitions?: number;
  /** Extra config text appended (cluster blocks in tests). */
  extraConfig?: string;
  /** Called with each line the server logs. */
  onLog?: (line: string) => void;
};

/** A running nats-server child. */
export type EmbeddedServer = {
  url: string;
  port: number;
  process: ChildProcess;
  /** Graceful stop (SIGTERM, then SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<void>;
  /** Immediate SIGKILL, for crash tests. */
  kill(): Promise<void>;
};

/** Writes the effective server config: the base text plus the partition mapping. */
export function writeServerConfig(opts: EmbeddedOptions): string {
  mkdirSync(opts.dataDir, { recursive: true });
  const parts: string[] = [];
  if (opts.baseConfig) parts.push(readFileSync(opts.baseConfig, "utf8"));
  if (opts.partitions) {
    const m = partitionMapping(opts.partitions);
    parts.push(`# written by achd: ${opts.partitions} partitions\nmappings {\n  "${m.src}": "${m.dest}"\n}\n`);
  }
  if (opts.extraConfig) parts.push(opts.extraConfig);
  const file = join(opts.dataDir, "nats-server.conf");
  writeFileSync(file, parts.join("\n"));
  return file;
}

/**
 * Starts nats-server with JetStream on `host:port`, its store under
 * `dataDir/jetstream`, and resolves once it accepts clients.
 */
export async function startNatsServer(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const bin = natsServerBinary();
  const dataDir = resolve(opts.dataDir);
  const conf = writeServerConfig({ ...opts, dataDir });
  const args = ["-c", conf, "-a", opts.host, "-p", String(opts.port), "-js", "-sd", join(dataDir, "jetstream")];
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let exited = false;
  const exit = new Promise<void>((res) => child.once("exit", () => ((exited = true), res())));
  const lines: string[] = [];
  const port = await new Promise<number>((res, rej) => {
    let buf = "";
    let found = 0;
    const onData = (chunk: Buffer) => {
      buf += chunk.toString("utf8");
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (lines.length > 50) lines.shift();
        opts.onLog?.(line);
        const m = /Listening for client connections on .*:(\d+)/.exec(line);
        if (m) found = Number(m[1]);
        if (/Server is ready/.test(line) && found) res(found);
      }
    };
    child.stderr!.on("data", onData);
    child.stdout!.on("data", onData);
    child.once("exit", (code) => {
      const busy = lines.some((l) => /address already in use/i.test(l));
      const hint = busy ? `\nport ${opts.port} is taken: set ACH_NATS_PORT to a free port, or NATS_URL to use the server that holds it` : "";
      rej(new Error(`nats-server exited (code ${code}) before it was ready:\n${lines.slice(-10).join("\n")}\n(config ${conf})${hint}`));
    });
  });
  const stop = async (timeoutMs = 10_000) => {
    if (exited) return;
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    await exit;
    clearTimeout(t);
  };
  const kill = async () => {
    if (exited) return;
    child.kill("SIGKILL");
    await exit;
  };
  return { url: `nats://${opts.host}:${port}`, port, process: child, stop, kill };
}

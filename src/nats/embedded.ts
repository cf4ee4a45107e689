import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { delimiter, isAbsolute, join, relative, resolve } from "node:path";
import { partitionMappingBlock } from "../events/mod.ts";
import { atLeast, binaryVersion, natsServerBinary } from "./server-binary.ts";

/** Options of a nats-server child process. */
export type EmbeddedOptions = {
  host: string;
  /** -1 picks a free port. */
  port: number;
  /** Data folder: the effective config and JetStream's store go here. */
  dataDir: string;
  /** Base config file whose text is copied into the effective config. */
  baseConfig?: string;
  /**
   * Partition count for the subject mapping, written only for a server before
   * 2.10: from 2.10 on the events stream maps subjects itself (omit for no mapping).
   */
  partitions?: number;
  /** The nats-server binary; default {@link natsServerBinary} (the newest on the machine). */
  binary?: string;
  /**
   * The file store's fsync policy (2.10+): `always` fsyncs every write before
   * it is acknowledged; `default` leaves the server's background flush
   * (every 2 minutes). `always` on a 2.9 server is refused.
   */
  sync?: "default" | "always";
  /** Extra config text appended (cluster blocks in tests). */
  extraConfig?: string;
  /**
   * An authorization file (`authorization { … }`) the config includes, so the
   * server starts with authorization on and {@link EmbeddedServer.reload}
   * applies a rewritten file. Omit for a server without authorization.
   */
  authorization?: string;
  /** Called with each line the server logs. */
  onLog?: (line: string) => void;
  /**
   * Have the kernel stop the server (SIGTERM) when this process dies, even by
   * SIGKILL (Linux, through util-linux `setpriv --pdeathsig`; ignored where
   * that is missing). Default true. The kernel ties the signal to the thread
   * that spawned the server: start it from the main thread (as the engine
   * does), not from a worker thread that may end first.
   */
  dieWithParent?: boolean;
};

/** A running nats-server child. */
export type EmbeddedServer = {
  url: string;
  port: number;
  process: ChildProcess;
  /** The binary it runs, and that binary's version (`2.15.3`). */
  binary: string;
  version: string;
  /** Graceful stop (SIGTERM, then SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<void>;
  /** Immediate SIGKILL, for crash tests. */
  kill(): Promise<void>;
  /**
   * Reloads the config in place (SIGHUP): clients stay connected, JetStream
   * keeps running. Resolves when the server reports the reload, rejects with
   * its reason when it refuses it.
   */
  reload(timeoutMs?: number): Promise<void>;
};

/** The embedded server cannot be configured or reloaded as asked; the message says why. */
export class EmbeddedServerError extends Error {
  override name = "EmbeddedServerError";
}

const JETSTREAM_BLOCK = /^(\s*jetstream\s*[:=]?\s*\{)/m;

/**
 * Puts JetStream's store directory into the config text rather than on the
 * command line: nats-server 2.9 refuses every config reload of a server whose
 * store directory came from `-sd` ("not supported for jetstream storage dir"),
 * and a reload without a `jetstream` block in the file turns JetStream off.
 */
function withStoreDir(text: string, storeDir: string, baseConfig?: string): string {
  if (/\bstore_dir\b/.test(text.replace(/(^|\s)(#|\/\/).*$/gm, ""))) {
    throw new EmbeddedServerError(`${baseConfig ?? "the base config"} sets store_dir: the embedded server keeps its store under dataDir; remove store_dir and set dataDir (ACH_DATA_DIR) instead`);
  }
  const line = `store_dir: ${JSON.stringify(storeDir)}`;
  return JETSTREAM_BLOCK.test(text) ? text.replace(JETSTREAM_BLOCK, `$1\n  ${line}`) : `${text}\njetstream {\n  ${line}\n}\n`;
}

/** The effective config file of the server on `dataDir`: its path on the server's command line identifies it. */
export function serverConfigFile(dataDir: string): string {
  return join(resolve(dataDir), "nats-server.conf");
}

/** The file where the server on `dataDir` writes its pid (`-P`): the next start finds a server its engine left behind. */
export function serverPidFile(dataDir: string): string {
  return join(resolve(dataDir), "nats-server.pid");
}

let pdeathsig: string | null | undefined;

/**
 * `setpriv` when it can set the parent-death signal (util-linux 2.33+), else
 * null: prctl(PR_SET_PDEATHSIG) is not reachable from Node itself, and
 * setpriv sets it and then execs the server in the same process (same pid).
 */
function setprivPath(): string | null {
  if (pdeathsig !== undefined) return pdeathsig;
  pdeathsig = null;
  if (process.platform !== "linux") return pdeathsig;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const bin = join(dir || ".", "setpriv");
    try {
      accessSync(bin, constants.X_OK);
      if (execFileSync(bin, ["--help"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 2000 }).includes("--pdeathsig")) pdeathsig = bin;
      break;
    } catch {
      // Not here, or too old: look on.
    }
  }
  return pdeathsig;
}

/**
 * Writes the effective server config for a server of `version`: the base text
 * with JetStream's store under `dataDir/jetstream` (and its fsync policy), the
 * partition mapping (before 2.10 only), and the include of the authorization file.
 */
export function writeServerConfig(opts: EmbeddedOptions, version: [number, number, number]): string {
  mkdirSync(opts.dataDir, { recursive: true });
  const parts: string[] = [];
  const base = opts.baseConfig ? readFileSync(opts.baseConfig, "utf8") : "";
  let jetstream = withStoreDir(base, resolve(opts.dataDir, "jetstream"), opts.baseConfig);
  if (opts.sync === "always") {
    if (!atLeast(version, 2, 10)) {
      throw new EmbeddedServerError(`nats.embedded.sync is "always" but nats-server ${version.join(".")} has no sync_interval (it came in 2.10): use a newer server (ACH_NATS_SERVER) or sync "default"`);
    }
    if (/\bsync_interval\b/.test(base.replace(/(^|\s)(#|\/\/).*$/gm, ""))) {
      throw new EmbeddedServerError(`${opts.baseConfig ?? "the base config"} sets sync_interval and nats.embedded.sync is "always": keep one of them`);
    }
    jetstream = jetstream.replace(JETSTREAM_BLOCK, "$1\n  sync_interval: always");
  }
  parts.push(jetstream);
  if (opts.authorization) {
    // nats-server resolves an include relative to the including file's folder.
    const rel = relative(resolve(opts.dataDir), resolve(opts.authorization));
    if (isAbsolute(rel)) throw new EmbeddedServerError(`authorization file ${opts.authorization} must be on the same drive as ${opts.dataDir}`);
    parts.push(`# written by achd: users and permissions (rewritten and reloaded when tenants change)\ninclude ${JSON.stringify(rel)}\n`);
  }
  if (opts.partitions && !atLeast(version, 2, 10)) {
    parts.push(`# written by achd: ${opts.partitions} partitions\n${partitionMappingBlock(opts.partitions)}\n`);
  }
  if (opts.extraConfig) parts.push(opts.extraConfig);
  const file = serverConfigFile(opts.dataDir);
  writeFileSync(file, parts.join("\n"));
  return file;
}

/**
 * Starts nats-server with JetStream on `host:port`, its store under
 * `dataDir/jetstream`, and resolves once it accepts clients.
 */
export async function startNatsServer(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const bin = opts.binary ?? natsServerBinary();
  const version = binaryVersion(bin);
  const dataDir = resolve(opts.dataDir);
  const conf = writeServerConfig({ ...opts, dataDir }, version);
  // The store directory is in the config file (see withStoreDir), not on the command line.
  const args = ["-c", conf, "-a", opts.host, "-p", String(opts.port), "-js", "-P", serverPidFile(dataDir)];
  const setpriv = opts.dieWithParent === false ? null : setprivPath();
  const child = setpriv ? spawn(setpriv, ["--pdeathsig", "TERM", "--", bin, ...args], { stdio: ["ignore", "pipe", "pipe"] }) : spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let exited = false;
  const exit = new Promise<void>((res) => child.once("exit", () => ((exited = true), res())));
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
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
        for (const l of listeners) l(line);
        const m = /Listening for client connections on .*:(\d+)/.exec(line);
        if (m) found = Number(m[1]);
        if (/Server is ready/.test(line) && found) res(found);
      }
    };
    child.stderr!.on("data", onData);
    child.stdout!.on("data", onData);
    child.once("exit", (code) => {
      const busy = lines.some((l) => /address already in use/i.test(l));
      // Never "another engine on this store": the data folder's lock refused that before the server was started.
      const hint = busy ? `\nport ${opts.port} is taken by another program (not by a server on this data folder): set ACH_NATS_PORT to a free port, or NATS_URL to use the server that holds the port` : "";
      rej(new EmbeddedServerError(`nats-server exited (code ${code}) before it was ready:\n${lines.slice(-10).join("\n")}\n(config ${conf})${hint}`));
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
  let reloads = Promise.resolve();
  const reload = (timeoutMs = 10_000) => {
    // One reload at a time: each waits for its own answer.
    const next = reloads.then(
      () =>
        new Promise<void>((res, rej) => {
          if (exited) return rej(new EmbeddedServerError("nats-server is not running: cannot reload its config"));
          const done = (err?: Error) => {
            clearTimeout(t);
            listeners.delete(onLine);
            if (err) rej(err);
            else res();
          };
          const onLine = (line: string) => {
            if (/Reloaded server configuration/.test(line)) done();
            const failed = /Failed to reload server configuration: (.*)$/.exec(line);
            if (failed) done(new EmbeddedServerError(`nats-server refused the config reload: ${failed[1]} (config ${conf})`));
          };
          const t = setTimeout(() => done(new EmbeddedServerError(`nats-server did not report the config reload within ${timeoutMs} ms`)), timeoutMs);
          listeners.add(onLine);
          child.kill("SIGHUP");
        }),
    );
    reloads = next.catch(() => undefined);
    return next;
  };
  return { url: `nats://${opts.host}:${port}`, port, process: child, binary: bin, version: version.join("."), stop, kill, reload };
}

/**
 * The engine's claim on its data folder while it runs the embedded server:
 * the folder's lock ({@link acquireStoreLock}), a nats-server that a dead
 * engine left running on the store stopped before a new one starts, and the
 * server stopped when this process exits, however it exits.
 */
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import type { Logger } from "../util/log.ts";
import { serverConfigFile, serverPidFile, type EmbeddedServer } from "./embedded.ts";
import { isAlive, processArgs, terminate } from "./process.ts";
import { acquireStoreLock, type StoreLock } from "./store-lock.ts";

/** A nats-server on this store is running and could not be confirmed or stopped; the message says what to do. */
export class LeftoverServerError extends Error {
  override name = "LeftoverServerError";
}

/** How long a leftover server gets to shut down on SIGTERM (JetStream flushes its store) before SIGKILL. */
export const LEFTOVER_GRACE_MS = 10_000;

/** A data folder held by this process. */
export type StoreClaim = {
  lock: StoreLock;
  /** Records the server's pid in the lock, and stops the server if this process exits before {@link release}. */
  attach(server: Pick<EmbeddedServer, "process">): void;
  /** Gives the folder up: call once the server has stopped. Idempotent. */
  release(): void;
};

type Live = { lock: StoreLock; server?: Pick<EmbeddedServer, "process"> };
const live = new Set<Live>();
let hooked = false;

const running = (s: Live["server"]) => !!s && s.process.exitCode === null && s.process.signalCode === null;

/**
 * On any exit of this process — normal, `process.exit`, an uncaught error —
 * stop the servers still running. Only synchronous work is possible here:
 * the server gets SIGTERM, and its lock stays (naming its pid) until it is
 * gone, so the next start waits for it rather than starting a second server
 * on a store still being written.
 */
function onExit(): void {
  for (const c of live) {
    if (running(c.server)) c.server!.process.kill("SIGTERM");
    else c.lock.release();
  }
}

function pidFromFile(file: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const n = Number(readFileSync(file, "utf8").trim());
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * Stops the nats-server a previous engine left running on `dataDir`: the
 * pid in the stale lock, or in the server's pid file. A pid is stopped only
 * when its command line is nats-server with this folder's config file; a
 * pid reused by another program is left alone.
 */
async function stopLeftover(dataDir: string, lock: StoreLock, log: Logger): Promise<void> {
  const conf = serverConfigFile(dataDir);
  const pids = new Set([lock.previous?.holder.server_pid, pidFromFile(serverPidFile(dataDir))].filter((p): p is number => p !== undefined));
  for (const pid of pids) {
    if (!isAlive(pid)) continue;
    const args = processArgs(pid);
    if (!args) {
      throw new LeftoverServerError(`pid ${pid} is recorded as the nats-server of ${dataDir} and is running, but its command line cannot be read to confirm it: if it is a nats-server with -c ${conf}, stop it (kill ${pid}) and start again`);
    }
    const line = args.join(" ");
    if (!line.includes("nats-server") || !line.includes(conf)) continue;
    log.warn({ server_pid: pid, config: conf }, "a nats-server left running on this data folder by an engine that is gone: stopping it before starting ours");
    const how = await terminate(pid, LEFTOVER_GRACE_MS);
    if (how === "alive") throw new LeftoverServerError(`the leftover nats-server (pid ${pid}, config ${conf}) did not stop on SIGTERM or SIGKILL: stop it, then start again`);
    log.info({ server_pid: pid, signal: how === "term" ? "SIGTERM" : "SIGKILL" }, "stopped the leftover nats-server");
  }
}

/**
 * Claims `dataDir` for an engine that runs the embedded server: takes the
 * folder's lock (throws `StoreLockedError` naming the holder when a live
 * engine has it), logs a stale lock taken over, and stops a server left on
 * the store. The claim lasts until {@link StoreClaim.release}.
 */
export async function claimStore(dataDir: string, log: Logger): Promise<StoreClaim> {
  const lock = acquireStoreLock(dataDir);
  const entry: Live = { lock };
  if (lock.previous) {
    const p = lock.previous.holder;
    log.warn({ file: lock.file, holder_pid: p.pid, since: p.since, server_pid: p.server_pid, reason: lock.previous.reason }, "took over the data folder's lock from an engine that is gone");
  }
  try {
    await stopLeftover(dataDir, lock, log);
  } catch (err) {
    lock.release();
    throw err;
  }
  if (!hooked) {
    hooked = true;
    process.on("exit", onExit);
  }
  live.add(entry);
  return {
    lock,
    attach(server) {
      entry.server = server;
      if (server.process.pid) lock.record(server.process.pid);
    },
    release() {
      // A server still running keeps the folder (and the exit hook stops it): the next owner must find it through the lock.
      if (!live.has(entry) || running(entry.server)) return;
      live.delete(entry);
      if (entry.server) {
        try {
          unlinkSync(serverPidFile(dataDir));
        } catch {
          // Never written (the server did not start), or gone already.
        }
      }
      lock.release();
    },
  };
}

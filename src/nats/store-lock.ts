/**
 * One owner per data folder: `<dataDir>/achd.lock`, created exclusively and
 * held for the engine's life. Two nats-servers on one JetStream store hand
 * out the same sequences to different events and lose acknowledged ones, so
 * a second engine on the folder must refuse, naming the holder.
 *
 * Not `proper-lockfile` or npm's `lockfile`: both judge a lock stale by its
 * age (mtime, refreshed on a timer), so an event loop stalled past the
 * staleness time lets a second owner in; neither records who holds the lock.
 * Here a lock is stale only when its process is gone: the pid is not alive,
 * or it now belongs to another program (its start time differs).
 */
import { randomUUID } from "node:crypto";
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { isAlive, processStartTime } from "./process.ts";

/** What `<dataDir>/achd.lock` holds (JSON). */
export type LockHolder = {
  pid: number;
  /** The holder's start identity ({@link processStartTime}); tells a reused pid apart. */
  start?: string;
  host: string;
  /** When the lock was taken (ISO 8601). */
  since: string;
  /** Random per acquisition: tells this holder's file from a successor's. */
  token: string;
  /** The embedded nats-server's pid, once it runs: the next owner stops it if it outlived its engine. */
  server_pid?: number;
};

/** The data folder belongs to a running engine; the message names it and says how to stop it. */
export class StoreLockedError extends Error {
  override name = "StoreLockedError";
  constructor(
    readonly file: string,
    readonly holder: LockHolder | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** A held lock on a data folder. */
export type StoreLock = {
  file: string;
  holder: LockHolder;
  /** The holder this lock replaced (found stale), with the reason; its server may still run. */
  previous?: { holder: LockHolder; reason: string };
  /** Records the embedded server's pid in the lock file (or clears it with undefined). */
  record(serverPid: number | undefined): void;
  /** Removes the lock file when it is still this holder's. Idempotent. */
  release(): void;
};

/** The lock file of a data folder. */
export function lockFile(dataDir: string): string {
  return join(resolve(dataDir), "achd.lock");
}

/** Tokens of the locks this process holds: a second engine in the same process is refused too. */
const held = new Set<string>();

function readHolder(file: string): LockHolder | undefined | "unreadable" {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const h = JSON.parse(text) as LockHolder;
    return Number.isInteger(h.pid) && typeof h.host === "string" && typeof h.token === "string" ? h : "unreadable";
  } catch {
    return "unreadable";
  }
}

/** Why `h` no longer holds the folder, or undefined while it does (or cannot be checked from here). */
function staleReason(h: LockHolder): string | undefined {
  if (h.host !== hostname()) return undefined;
  if (h.pid === process.pid) return held.has(h.token) ? undefined : `pid ${h.pid} is this process, which does not hold it (a previous run with the same pid)`;
  if (!isAlive(h.pid)) return `pid ${h.pid} is not running`;
  const now = processStartTime(h.pid);
  if (h.start && now && now !== h.start) return `pid ${h.pid} now belongs to another program (started ${now}, the holder at ${h.start})`;
  return undefined;
}

function writeFileDurably(path: string, text: string): void {
  const fd = openSync(path, "wx", 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Creates `file` with `h` in one step (a hard link of a complete file): no reader ever sees it half written. */
function createExclusive(file: string, h: LockHolder): boolean {
  const tmp = `${file}.${h.token}.tmp`;
  writeFileDurably(tmp, `${JSON.stringify(h)}\n`);
  try {
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

function refusal(file: string, h: LockHolder | "unreadable"): StoreLockedError {
  if (h === "unreadable") {
    return new StoreLockedError(file, undefined, `the data folder is locked by ${file}, which cannot be read: if no achd runs on this folder, delete that file and start again`);
  }
  const who = `pid ${h.pid} on ${h.host}, since ${h.since}`;
  if (h.host !== hostname()) {
    return new StoreLockedError(file, h, `the data folder is in use by achd ${who} (another machine sharing the folder): stop it there; if that machine no longer runs it, delete ${file}`);
  }
  const self = h.pid === process.pid ? " (another engine in this same process)" : "";
  return new StoreLockedError(
    file,
    h,
    `the data folder ${resolve(file, "..")} is in use by achd ${who}${self}: one engine per data folder (two nats-servers on one store lose events). ` +
      `Stop it first (kill ${h.pid}; it drains and exits), or give this one its own folder (ACH_DATA_DIR), or point it at that engine's server (NATS_URL)`,
  );
}

/**
 * Takes `h`'s stale lock over. A guard file serialises takeovers: two
 * processes that both judged the same lock stale cannot both replace it,
 * and neither removes a fresh lock taken in the meantime (the file is
 * compared again under the guard).
 */
function takeOver(file: string, stale: LockHolder, mine: LockHolder): boolean {
  const guard = `${file}.takeover`;
  try {
    writeFileDurably(guard, `${process.pid}\n`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    // A takeover takes milliseconds; a guard this old was left by a process that died in the middle of one.
    const age = Date.now() - (statSync(guard, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > 10_000) unlinkSync(guard);
    return false;
  }
  try {
    const now = readHolder(file);
    if (now !== undefined && (now === "unreadable" || now.token !== stale.token)) return false;
    if (now !== undefined) unlinkSync(file);
    return createExclusive(file, mine);
  } finally {
    unlinkSync(guard);
  }
}

/**
 * Locks `dataDir` for this process: creates `<dataDir>/achd.lock`
 * exclusively, holding pid, start time, host and time. A lock whose process
 * is gone is taken over (see {@link StoreLock.previous}). Throws
 * {@link StoreLockedError} naming the holder when a live process holds it.
 */
export function acquireStoreLock(dataDir: string): StoreLock {
  mkdirSync(dataDir, { recursive: true });
  const file = lockFile(dataDir);
  const mine: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString(), token: randomUUID() };
  const start = processStartTime(process.pid);
  if (start) mine.start = start;
  let previous: StoreLock["previous"];
  for (let attempt = 0; ; attempt++) {
    if (createExclusive(file, mine)) break;
    const h = readHolder(file);
    if (h === undefined && attempt < 20) continue; // released between our two steps: try again
    if (h === undefined || h === "unreadable") throw refusal(file, h ?? "unreadable");
    const reason = staleReason(h);
    // Another process may be taking the same stale lock over; after a few rounds, say who holds it now.
    if (!reason || attempt >= 20) throw refusal(file, h);
    if (takeOver(file, h, mine)) {
      previous = { holder: h, reason };
      break;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
  }
  held.add(mine.token);
  const ours = () => {
    const h = readHolder(file);
    return h !== undefined && h !== "unreadable" && h.token === mine.token;
  };
  return {
    file,
    holder: mine,
    ...(previous ? { previous } : {}),
    record(serverPid) {
      if (!held.has(mine.token) || !ours()) return;
      if (serverPid === undefined) delete mine.server_pid;
      else mine.server_pid = serverPid;
      // Rename over the lock: a reader sees the old record or the new, never a missing lock.
      const tmp = `${file}.${mine.token}.tmp`;
      writeFileDurably(tmp, `${JSON.stringify(mine)}\n`);
      renameSync(tmp, file);
    },
    release() {
      if (!held.delete(mine.token)) return;
      if (ours()) unlinkSync(file);
    },
  };
}

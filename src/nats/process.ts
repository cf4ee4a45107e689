/**
 * What the engine needs to know about another process on this machine — is
 * it alive, is it still the process we recorded (not a reused pid), what is
 * its command line — and a bounded way to stop one. Linux answers from
 * /proc; elsewhere `ps` answers, and what neither can tell is "unknown".
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { sleep } from "../util/lifecycle.ts";

/** Alive (running or sleeping), gone (no such process, or a zombie waiting to be reaped). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists, under another user.
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  // A killed process whose parent has not reaped it yet still answers signal 0, but it is gone.
  const stat = procStat(pid);
  return !stat || !/^[ZX]/.test(stat.state);
}

type ProcStat = { state: string; startTime: string };

function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces or ")": count fields after the last ")".
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    // Fields 3 (state) and 22 (start time in clock ticks after boot), counted from 1 in proc(5).
    return { state: rest[0] ?? "", startTime: rest[19] ?? "" };
  } catch {
    return undefined;
  }
}

/**
 * An identity of the process's start that changes when its pid is reused:
 * Linux's start time in clock ticks after boot (from /proc/<pid>/stat), or
 * `ps`'s start time elsewhere; undefined when neither answers.
 */
export function processStartTime(pid: number): string | undefined {
  const stat = procStat(pid);
  if (stat) return stat.startTime;
  return ps(pid, "lstart");
}

/**
 * The process's command line as its arguments (`/proc/<pid>/cmdline`, or
 * `ps` split on spaces elsewhere); undefined when it cannot be read.
 */
export function processArgs(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter((a) => a.length > 0);
  } catch {
    return ps(pid, "command")?.split(/\s+/);
  }
}

function ps(pid: number, field: string): string | undefined {
  try {
    const out = execFileSync("ps", ["-o", `${field}=`, "-p", String(pid)], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 2000 }).trim();
    return out || undefined;
  } catch {
    return undefined;
  }
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/**
 * Stops process `pid`: SIGTERM, then SIGKILL when it is still there after
 * `graceMs`. Resolves with how it ended: `"term"`, `"kill"`, or `"alive"`
 * when even SIGKILL did not remove it within `killMs` (not ours to signal).
 */
export async function terminate(pid: number, graceMs: number, killMs = 5000): Promise<"term" | "kill" | "alive"> {
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      // Gone already, or not ours: the wait below tells which.
    }
  };
  signal("SIGTERM");
  if (await gone(pid, graceMs)) return "term";
  signal("SIGKILL");
  return (await gone(pid, killMs)) ? "kill" : "alive";
}

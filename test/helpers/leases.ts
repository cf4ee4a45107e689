import type { ChildEngine } from "./child.ts";

/** A time span during which a worker held (and could write for) a partition. */
export type Interval = { worker: string; partition: number; from: number; to: number };

/**
 * The lease intervals a worker logged: from "partition acquired" to its
 * handover, or to when its fence stopped writes after a lost lease, or to
 * its death (`diedAt`) or now.
 */
export function leaseIntervals(worker: string, c: ChildEngine, diedAt?: number): Interval[] {
  const open = new Map<number, number>();
  const out: Interval[] = [];
  for (const line of c.output) {
    let j: { msg?: string; partition?: number; time?: number; writesUntil?: number };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    if (j.partition === undefined || j.time === undefined) continue;
    if (j.msg === "partition acquired") open.set(j.partition, j.time);
    if (j.msg === "partition handed over" || j.msg?.startsWith("lease lost")) {
      const from = open.get(j.partition);
      // A lost lease stopped writes at writesUntil (the fence), before the loss was noticed and logged.
      if (from !== undefined) out.push({ worker, partition: j.partition, from, to: Math.min(j.time, j.writesUntil ?? j.time) });
      open.delete(j.partition);
    }
  }
  for (const [partition, from] of open) out.push({ worker, partition, from, to: diedAt ?? Date.now() });
  return out;
}

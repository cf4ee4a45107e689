import { expect } from "vitest";
import type { ChildEngine } from "./child.ts";

/** A time span during which a worker held (and could write for) a partition. */
export type Interval = { worker: string; partition: number; from: number; to: number };

const ENDS = new Set(["partition handed over", "lease lost; partition stopped", "lease not renewed in time; partition stopped", "partition stopped itself; lease released"]);

/**
 * The tenures a worker logged: from the moment it asked for the lease
 * (`since` of "partition acquired") to the last write or ack it let through
 * its fence (`lastWriteAt` of the line that ends the tenure), or to its death
 * (`diedAt`) or now when it still holds the partition.
 */
export function leaseIntervals(worker: string, c: ChildEngine, diedAt?: number): Interval[] {
  const open = new Map<number, number>();
  const out: Interval[] = [];
  for (const line of c.output) {
    let j: { msg?: string; partition?: number; since?: number; lastWriteAt?: number };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue;
    }
    if (j.partition === undefined || j.msg === undefined) continue;
    if (j.msg === "partition acquired" && j.since !== undefined) open.set(j.partition, j.since);
    if (ENDS.has(j.msg)) {
      const from = open.get(j.partition);
      if (from !== undefined) out.push({ worker, partition: j.partition, from, to: Math.max(from, j.lastWriteAt ?? from) });
      open.delete(j.partition);
    }
  }
  for (const [partition, from] of open) out.push({ worker, partition, from, to: diedAt ?? Date.now() });
  return out;
}

/** One worker per partition at a time: every partition was held, and each next holder asked for it only after the previous one let its last write through. */
export function expectOneHolderAtATime(all: readonly Interval[], partitions: number): void {
  for (let k = 0; k < partitions; k++) {
    const mine = all.filter((iv) => iv.partition === k).sort((a, b) => a.from - b.from);
    expect(mine.length, `partition ${k} was held`).toBeGreaterThan(0);
    for (let n = 1; n < mine.length; n++) {
      expect(mine[n]!.from, `partition ${k}: ${mine[n]!.worker} took it before ${mine[n - 1]!.worker} let go`).toBeGreaterThanOrEqual(mine[n - 1]!.to);
    }
  }
}

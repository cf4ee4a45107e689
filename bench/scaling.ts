import { spawn, type ChildProcess } from "node:child_process";
import { Kvm } from "@nats-io/kv";
import { clusterStatus, LeaseTable, Membership, plannedPartitions } from "../src/cluster/mod.ts";
import { Buckets, partitionsDrained, Streams } from "../src/nats/mod.ts";
import { countWorkload, COUNT_RULES, type CountWorkload } from "./counts.ts";
import { compiled } from "./engine.ts";
import { cpuSecondsOf, preload, startStack, until, type OnProgress, type Phase, type Stack } from "./stack.ts";

/** One run of the count stream through `processes` worker processes. */
export type ScalingRun = {
  processes: number;
  events: number;
  /** From starting the workers until every partition has everything acknowledged. */
  seconds: number;
  perSecond: number;
  /**
   * From the moment the partitions were held as the plan has them (all by
   * the one worker; or split evenly) until drained: what was left then, and
   * the rate it went at. Absent when the stream was drained before that.
   * A worker counts another for its plan only once it has seen it live for
   * a whole lease TTL (`leases.ttl`, 10 s by default): until then two
   * workers started together each take whatever partitions are still free
   * when they look (a race, one at a time), and about one TTL after the
   * start they hand over what the plan gives the other.
   */
  split?: { afterSeconds: number; backlog: number; perSecond: number };
  /** Each worker's CPU time (user + system) over its life, and the lines it logged at warn or above. */
  workers: { id: string; cpuSeconds: number; warnings: number; firstWarning?: string }[];
  /** The nats-server's CPU time over the run, and the bench process's (polling the server). */
  serverCpuSeconds: number;
  benchCpuSeconds: number;
  /** Unlock events in the unlocks stream at the end. */
  unlocks: number;
};

export type ScalingResult = {
  workload: CountWorkload;
  rules: string;
  /** The workers' `leases.ttl` (the default): about when two workers started together settle on the planned split. */
  leaseTtlMs: number;
  runs: ScalingRun[];
  /** Two processes' events/s over one's: from the start, and after the split. */
  speedUp?: number;
  splitSpeedUp?: number;
};

/**
 * The count workload through 1, then 2 (`processes`) `achd worker` child
 * processes: for each, a fresh stack is loaded with the stream, the
 * workers are started together (the compiled CLI, each with its own
 * `worker.id`; they share the partitions through leases), and the run is
 * timed until every partition is drained. Each worker's CPU time and the
 * server's are read from /proc, so that what limits the speed-up shows:
 * on a small machine the workers and the server share the same cores.
 */
export async function measureScaling(w: CountWorkload, processes: readonly number[], stackOpts: { partitions: number; sync?: "default" | "always" }, phase?: Phase): Promise<ScalingResult> {
  const achd = await compiled();
  const runs: ScalingRun[] = [];
  let leaseTtl = 0;
  for (const n of processes) {
    const stack = await startStack(stackOpts.partitions, stackOpts.sync, { rules: COUNT_RULES });
    leaseTtl = stack.config.leases.ttl;
    try {
      const loaded = await preload(stack.js, countWorkload(w), 2000, phase?.(`scaling, ${n} worker${n === 1 ? "" : "s"}: loading`, "events", w.events));
      runs.push(await runWorkers(stack, achd, n, loaded.count, phase?.(`scaling, ${n} worker${n === 1 ? "" : "s"}`, "events", loaded.count)));
    } finally {
      await stack.close();
    }
  }
  const one = runs.find((r) => r.processes === 1);
  const two = runs.find((r) => r.processes === 2);
  return {
    workload: w,
    rules: COUNT_RULES,
    leaseTtlMs: leaseTtl,
    runs,
    ...(one && two ? { speedUp: two.perSecond / one.perSecond } : {}),
    ...(one?.split && two?.split ? { splitSpeedUp: two.split.perSecond / one.split.perSecond } : {}),
  };
}

type Worker = { id: string; child: ChildProcess; warnings: number; firstWarning?: string; exited?: number | null };

/** Starts `n` workers on the stack's loaded stream and times them until drained; stops them. */
async function runWorkers(stack: Stack, achd: string, n: number, events: number, onProgress?: OnProgress): Promise<ScalingRun> {
  const { config, jsm } = stack;
  const ids = Array.from({ length: n }, (_, i) => `bench-scale-${n}-${i}`).sort();
  const leases = new LeaseTable(await new Kvm(stack.nc).open(Buckets.Leases), "bench-observer");
  const members = new Membership(await new Kvm(stack.nc).open(Buckets.Workers), "bench-observer");
  // How many partitions each worker holds once the plan has settled (which ones depends on the order the workers are listed in).
  const share = new Map(ids.map((id) => [id, plannedPartitions(id, ids, config.partitions).length]));
  const settled = (owners: (string | null)[]) => ids.every((id) => owners.filter((o) => o === id).length === share.get(id));
  const server0 = await cpuSecondsOf(stack.server.process.pid!);
  const bench0 = process.cpuUsage();
  const t0 = performance.now();
  const workers: Worker[] = ids.map((id) => {
    const child = spawn(process.execPath, [achd, "worker"], {
      env: {
        ...process.env,
        NATS_URL: stack.url,
        ACH_RULES: COUNT_RULES,
        ACH_PARTITIONS: String(config.partitions),
        ACH_WORKER_ID: id,
        // The TTL reported with the results, whatever this process's environment says.
        ACH_LEASE_TTL: `${config.leases.ttl}ms`,
        // Several workers side by side: none serves /metrics (the default port would be taken twice).
        ACH_METRICS_PORT: "-1",
        ACH_LOG_JSON: "1",
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const w: Worker = { id, child, warnings: 0 };
    // At warn level every line is a warning or worse: counted, the first kept for the report.
    let partial = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      const lines = (partial + s).split("\n");
      // A read may end inside a line: its rest comes with the next one.
      partial = lines.pop()!;
      for (const line of lines) {
        if (!line.trim()) continue;
        w.warnings++;
        w.firstWarning ??= line.slice(0, 300);
      }
    });
    child.once("exit", (code) => (w.exited = code));
    return w;
  });
  try {
    let split: { at: number; backlog: number } | undefined;
    let polls = 0;
    const t1 = await until(async () => {
      const gone = workers.find((w) => w.exited !== undefined);
      if (gone) throw new Error(`scaling: worker ${gone.id} exited (${gone.exited}) before the stream was drained`);
      // Ownership and progress every fifth poll; whether it is drained every poll.
      if (polls++ % 5 === 0) {
        const s = await clusterStatus(jsm, leases, members, config.partitions, Date.now()).catch(() => undefined);
        if (s && s.partitions.every((p) => p.pending !== null && p.ack_pending !== null)) {
          const backlog = s.partitions.reduce((a, p) => a + p.pending! + p.ack_pending!, 0);
          onProgress?.(events - backlog, events);
          if (!split && settled(s.partitions.map((p) => p.owner))) split = { at: performance.now(), backlog };
        }
      }
      return partitionsDrained(jsm, config.partitions).catch(() => false);
    }, 50);
    onProgress?.(events, events);
    const serverCpuSeconds = (await cpuSecondsOf(stack.server.process.pid!)) - server0;
    const used = process.cpuUsage(bench0);
    const cpu = await Promise.all(workers.map((w) => cpuSecondsOf(w.child.pid!)));
    const seconds = (t1 - t0) / 1000;
    const unlocks = (await jsm.streams.info(Streams.Unlocks)).state.messages;
    return {
      processes: n,
      events,
      seconds,
      perSecond: events / seconds,
      ...(split && split.backlog > 0 ? { split: { afterSeconds: (split.at - t0) / 1000, backlog: split.backlog, perSecond: split.backlog / ((t1 - split.at) / 1000) } } : {}),
      workers: workers.map((w, i) => ({ id: w.id, cpuSeconds: cpu[i]!, warnings: w.warnings, ...(w.firstWarning ? { firstWarning: w.firstWarning } : {}) })),
      serverCpuSeconds,
      benchCpuSeconds: (used.user + used.system) / 1e6,
      unlocks,
    };
  } finally {
    await Promise.all(
      workers.map(async (w) => {
        if (w.exited !== undefined) return;
        const exit = new Promise((r) => w.child.once("exit", r));
        w.child.kill("SIGTERM");
        await exit;
      }),
    );
  }
}

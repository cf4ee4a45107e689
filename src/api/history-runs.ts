import type { FastifyReply } from "fastify";

/** History runs (shadow runs, backfills, as-of answers) one API process runs at once: each reads the events log on the event loop the API shares. */
export const MAX_RUNS = 4;

/** One run holding a slot: its cancellation, its report id once known, and what settles when it is over. */
export class Run {
  readonly ac = new AbortController();
  id: string | undefined;
  done: Promise<unknown> = Promise.resolve();
  constructor(private readonly runs: HistoryRuns) {}
  /** Its report is saved as running: DELETE /v1/history/reports/:id finds it from now on. */
  started(id: string): void {
    this.id = id;
    this.runs.byId.set(id, this);
  }
  /** Aborts the run when the request's client goes away before the answer is sent; returns the undo. */
  cancelOnClose(reply: FastifyReply): () => void {
    const gone = () => {
      if (!reply.raw.writableFinished) this.ac.abort();
    };
    reply.raw.on("close", gone);
    return () => reply.raw.off("close", gone);
  }
  /** Frees the slot. */
  release(): void {
    this.runs.running.delete(this);
    if (this.id) this.runs.byId.delete(this.id);
  }
}

/**
 * The history runs of one API process: at most {@link MAX_RUNS} at once
 * (a slot is taken before the run's first wait, so the bound holds however
 * many requests arrive together), cancellable by report id, and all
 * cancelled when the API stops.
 */
export class HistoryRuns {
  readonly running = new Set<Run>();
  readonly byId = new Map<string, Run>();

  /** A slot, or undefined when {@link MAX_RUNS} runs are going on. */
  take(): Run | undefined {
    if (this.running.size >= MAX_RUNS) return undefined;
    const run = new Run(this);
    this.running.add(run);
    return run;
  }

  /** Cancels the run with this report id; false when no such run is going on here. */
  cancel(id: string): boolean {
    const run = this.byId.get(id);
    run?.ac.abort();
    return run !== undefined;
  }

  /** Cancels every run and waits up to `waitMs` for them to save their reports. */
  async stop(waitMs: number): Promise<void> {
    for (const r of this.running) r.ac.abort();
    const settled = Promise.allSettled([...this.running].map((r) => r.done));
    await Promise.race([settled, new Promise((r) => setTimeout(r, waitMs).unref())]);
  }

  /** The 429 answer when no slot is free. */
  static tooMany(reply: FastifyReply) {
    return reply.code(429).header("retry-after", "5").send({ error: "too_many_requests", message: `${MAX_RUNS} history runs are going on in this process already (GET /v1/history/reports); retry when one has finished` });
  }
}

/**
 * Where history runs leave their reports (shadow runs, backfills, rebuilds)
 * and where a backfill keeps its checkpoint: the `ach_history` bucket.
 */
import { randomBytes } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { isCasFailure } from "../nats/mod.ts";

/** Fields every stored report has; the rest depends on its kind. */
export type ReportBase = { kind: "shadow" | "backfill" | "rebuild"; id: string; created_at: string; status?: "running" | "done" | "cancelled" | "failed"; error?: string };

/** Reports listed by {@link HistoryStore.list}, at most. */
export const REPORTS_LISTED = 50;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A new report id: its creation time first (ids sort in time order), its kind, and a random part. */
export function reportId(kind: ReportBase["kind"], now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, "").replace(".", "")}-${kind}-${randomBytes(4).toString("hex")}`;
}

/** A backfill's progress, kept so a rerun after a crash resumes where it stopped. */
export type Checkpoint = {
  /** The report of this run. */
  report: string;
  /** The stream's last sequence when the run started: a resumed run reads the same range, so it computes the same unlocks. */
  to_seq: number;
  /** Unlocks (in the run's order) already handled. */
  done: number;
  recorded: number;
  already_recorded: number;
  finished: boolean;
};

export class HistoryStore {
  constructor(private readonly kv: KV) {}

  /** Stores (or replaces) a report. */
  async save(r: ReportBase): Promise<void> {
    await this.kv.put(`r.${r.id}`, enc.encode(JSON.stringify(r)));
  }

  async get(id: string): Promise<ReportBase | undefined> {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) return undefined;
    const e = await this.kv.get(`r.${id}`);
    return e && e.operation === "PUT" ? (JSON.parse(dec.decode(e.value)) as ReportBase) : undefined;
  }

  /** The newest reports, newest first (at most {@link REPORTS_LISTED}). */
  async list(limit = REPORTS_LISTED): Promise<ReportBase[]> {
    const ids: string[] = [];
    for await (const k of await this.kv.keys("r.>")) ids.push(k.slice(2));
    ids.sort().reverse();
    const out: ReportBase[] = [];
    for (const id of ids.slice(0, Math.min(limit, REPORTS_LISTED))) {
      const r = await this.get(id);
      if (r) out.push(r);
    }
    return out;
  }

  /** A backfill's checkpoint with its revision, if one is stored. */
  async checkpoint(key: string): Promise<{ value: Checkpoint; revision: number } | undefined> {
    const e = await this.kv.get(`b.${key}`);
    return e && e.operation === "PUT" ? { value: JSON.parse(dec.decode(e.value)) as Checkpoint, revision: e.revision } : undefined;
  }

  /**
   * Writes a checkpoint with compare-and-set on `revision` (0: must not
   * exist); returns the new revision. Two runs of the same backfill at once
   * cannot both advance it: the second gets {@link ConcurrentRunError}.
   */
  async saveCheckpoint(key: string, c: Checkpoint, revision: number): Promise<number> {
    try {
      const body = enc.encode(JSON.stringify(c));
      return revision ? await this.kv.update(`b.${key}`, body, revision) : await this.kv.create(`b.${key}`, body);
    } catch (err) {
      if (isCasFailure(err)) throw new ConcurrentRunError(key);
      throw err;
    }
  }
}

/** An error's message, or the thrown value as text. */
export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Saves `report` as failed with `err`'s message, then throws `err`; when the
 * save fails too, throws both (an AggregateError), so neither is lost.
 */
export async function saveFailed(store: HistoryStore, report: ReportBase, err: unknown): Promise<never> {
  try {
    await store.save({ ...report, status: "failed", error: messageOf(err) });
  } catch (saveErr) {
    throw new AggregateError([err, saveErr], `${messageOf(err)} (and its report ${report.id} could not be saved as failed: ${messageOf(saveErr)})`);
  }
  throw err;
}

/** Another run of the same backfill moved its checkpoint. */
export class ConcurrentRunError extends Error {
  override name = "ConcurrentRunError";
  constructor(key: string) {
    super(`another run of this backfill (checkpoint ${key} in bucket ach_history) is going on; wait for it to finish, or stop it`);
  }
}

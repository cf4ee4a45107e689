/**
 * Backfill: record the unlocks that history implies under a rule version
 * and that are not recorded yet — backdated to the event that earned them,
 * marked `backfill: true` so notifications stay quiet, exactly once across
 * crashes and reruns, at a bounded rate beside live traffic. Unlocks are
 * never revoked: those the history no longer implies are reported only.
 */
import { createHash } from "node:crypto";
import type { JetStreamClient, JetStreamManager, PubAck } from "@nats-io/jetstream";
import { decodeState, emptyUserState, encodeState, unlockRecordKey, userKey, withUnlock, type UserState } from "../core/mod.ts";
import { isCasFailure, Streams, type KvStore } from "../nats/mod.ts";
import { Pace, replayStream, type ReplayOptions } from "../replay/mod.ts";
import { UnlockSink, unlockPublisher } from "../pipeline/unlocks.ts";
import type { UnlockRecords } from "../pipeline/unlock-records.ts";
import type { RuleBook, RuleVersion, Unlock } from "../rules/mod.ts";
import { reportId, saveFailed, type Checkpoint, type HistoryStore, type ReportBase } from "./reports.ts";
import { appliesTo } from "./versions.ts";
import { SAMPLES, unlockSample, withVersion, type Coverage, type UnlockSample } from "./shadow.ts";
import { streamHorizon } from "./source.ts";

export type BackfillDeps = {
  js: JetStreamClient & { publish(subject: string, data: Uint8Array, opts: { msgID: string }): Promise<PubAck> };
  jsm: JetStreamManager;
  /** The unlock records (the unlocks stream, one message per unlock subject), listed for `would_lose`. */
  records: Pick<UnlockRecords, "keys">;
  store: HistoryStore;
  /** User state (bucket `ach_state`): each backfilled unlock is marked unlocked there too. */
  state: KvStore;
};

export type BackfillOptions = Omit<ReplayOptions, "candidate" | "book" | "fromSeq" | "toSeq"> & {
  book: RuleBook;
  /** Where the rule lives: a tenant, or `*` for the shared rules. */
  scope: string;
  /** The version applied, in force over all of history read. */
  version: RuleVersion;
  /** Unlocks recorded per second, at most (the live workers keep the rest of the machine). */
  unlocksPerSecond: number;
  /** Told the report's id once it is saved as running. */
  onStart?: ((id: string) => void) | undefined;
  /** Told how far the recording phase is (after the evaluation's own progress). */
  onRecord?: ((done: number, total: number) => void) | undefined;
};

export type BackfillReport = ReportBase & {
  kind: "backfill";
  rule_id: string;
  scope: string | null;
  version: number;
  /** Stream time the history was read from (null: all of it). */
  from: string | null;
  coverage: Coverage;
  /** Unlocks of the rule that history implies, those this run recorded, and those recorded before (by the workers or an earlier run). */
  implied: number;
  recorded: number;
  already_recorded: number;
  /** Recorded unlocks of the rule that history under this version does not imply: kept (unlocks are never revoked). Null when read from a start time (earlier events were not read). */
  would_lose: number | null;
  samples: { recorded: UnlockSample[]; would_lose: string[] };
  by_tier: { achievement_id: string; tier: string | null; implied: number; recorded: number; already_recorded: number }[];
  /** Users whose stored state could not be read (left as they are; their unlocks are recorded all the same). */
  unreadable_states: string[];
  /** Set when this run took over from a crashed or stopped one: the unlocks it had handled. */
  resumed_at?: number;
  /** Unlocks per second allowed. */
  rate: number;
};

/** Unlocks a backfill records per second: the default, and the bounds every door (CLI, API) checks. */
export const BACKFILL_RATE = { default: 200, min: 1, max: 100_000 } as const;

/** Checkpoints are written after this many unlocks (and at the end). A resumed run re-checks this many against the unlocks stream. */
const CHECKPOINT_EVERY = 100;

const enc = new TextEncoder();

/** The checkpoint key of a backfill: the same rule, version, scope, tenant and start resume each other. */
export function backfillKey(scope: string, version: RuleVersion, tenant?: string, fromTime?: number): string {
  return createHash("sha256")
    .update([scope, tenant ?? "", version.rule.id, String(version.version), fromTime === undefined ? "" : String(fromTime)].join("\u0000"))
    .digest("hex")
    .slice(0, 24);
}

/**
 * Runs (or resumes) a backfill. The evaluation is deterministic over a fixed
 * stream range (the checkpoint keeps its end), so a resumed run computes the
 * same unlocks in the same order and continues after the last checkpoint;
 * every unlock is published create-only on its own subject, as the workers
 * publish theirs, so nothing is recorded twice, whichever run (or worker)
 * does it.
 */
export async function backfill(d: BackfillDeps, o: BackfillOptions): Promise<BackfillReport> {
  const book = withVersion(o.book, o.scope, o.version);
  const id = o.version.rule.id;
  const key = backfillKey(o.scope, o.version, o.tenant, o.fromTime);
  const horizon = await streamHorizon(d.jsm);
  const prev = await d.store.checkpoint(key);
  const resume = prev && !prev.value.finished ? prev.value : undefined;
  const created = new Date();
  const cp: Checkpoint = resume ?? { report: reportId("backfill", created), to_seq: horizon.last_seq, done: 0, recorded: 0, already_recorded: 0, finished: false };
  const revision = await d.store.saveCheckpoint(key, cp, prev?.revision ?? 0);
  const report: BackfillReport = {
    kind: "backfill",
    id: cp.report,
    created_at: created.toISOString(),
    status: "running",
    rule_id: id,
    scope: o.scope === "*" ? null : o.scope,
    version: o.version.version,
    from: o.fromTime === undefined ? null : new Date(o.fromTime).toISOString(),
    coverage: { from_seq: 0, to_seq: cp.to_seq, events: 0, users: 0, rejected: 0, duplicates: 0, seconds: 0, events_per_second: 0, horizon, ...(o.file ? { file: o.file } : {}), tenant: o.tenant ?? null },
    implied: 0,
    recorded: cp.recorded,
    already_recorded: cp.already_recorded,
    would_lose: null,
    samples: { recorded: [], would_lose: [] },
    by_tier: [],
    unreadable_states: [],
    ...(resume ? { resumed_at: resume.done } : {}),
    rate: o.unlocksPerSecond,
  };
  await d.store.save(report);
  o.onStart?.(report.id);
  try {
    return await run(d, o, book, key, cp, revision, report);
  } catch (err) {
    return saveFailed(d.store, report, err);
  }
}

/** A backfill once its report is saved as running: evaluate, record, report. */
async function run(d: BackfillDeps, o: BackfillOptions, book: RuleBook, key: string, cp: Checkpoint, revision: number, report: BackfillReport): Promise<BackfillReport> {
  const id = o.version.rule.id;
  const resume = report.resumed_at !== undefined;
  const t0 = performance.now();
  const r = await replayStream(d.js, d.jsm, { ...o, book, toSeq: cp.to_seq });
  // A shared rule's backfill leaves alone the tenants that replace the rule with a version of their own.
  const applies = appliesTo(o.book, o.scope, id);
  const implied = r.unlocks.filter((u) => u.rule_id === id && applies(u.tenant_id));
  Object.assign(report.coverage, { from_seq: r.fromSeq, to_seq: r.toSeq, events: r.events, users: r.users, rejected: r.rejected, duplicates: r.duplicates });
  report.implied = implied.length;
  const tiers = new Map<string, BackfillReport["by_tier"][number]>();
  const tier = (u: Unlock) => {
    const k = `${u.achievement_id}\u0000${u.tier ?? ""}`;
    let t = tiers.get(k);
    if (!t) tiers.set(k, (t = { achievement_id: u.achievement_id, tier: u.tier, implied: 0, recorded: 0, already_recorded: 0 }));
    return t;
  };
  for (const u of implied) tier(u).implied++;
  // What is done so far, into the report (the checkpoint counts it).
  const tally = () => {
    report.recorded = cp.recorded;
    report.already_recorded = cp.already_recorded;
    report.by_tier = [...tiers.values()];
  };
  if (r.cancelled) {
    tally();
    return finish(d, report, "cancelled", t0);
  }

  // Publishing is create-only on the unlock's own subject: an unlock a worker, or a run before a crash, stored already is refused, not stored twice.
  const sink = new UnlockSink(unlockPublisher(d.js));
  const pace = new Pace(o.unlocksPerSecond);
  let lastSave = performance.now();
  for (let i = cp.done; i < implied.length; i++) {
    if (o.signal?.aborted) {
      // What was done so far, in the report and the checkpoint: a rerun resumes here.
      tally();
      await d.store.saveCheckpoint(key, cp, revision);
      return finish(d, report, "cancelled", t0);
    }
    await pace.take();
    const u = implied[i]!;
    // False: stored before, by a live worker or by this backfill before a crash.
    const mine = await sink.deliverBackfilled(u);
    if (mine) {
      cp.recorded++;
      tier(u).recorded++;
      if (report.samples.recorded.length < SAMPLES) report.samples.recorded.push(unlockSample(u));
    } else {
      cp.already_recorded++;
      tier(u).already_recorded++;
    }
    await markUnlocked(d.state, u, report);
    cp.done = i + 1;
    o.onRecord?.(cp.done, implied.length);
    if (cp.done % CHECKPOINT_EVERY === 0 || performance.now() - lastSave > 1000) {
      revision = await d.store.saveCheckpoint(key, cp, revision);
      lastSave = performance.now();
    }
  }
  tally();
  if (o.fromTime === undefined) {
    const impliedKeys = new Set(implied.map(unlockRecordKey));
    let lost = 0;
    // Recorded unlocks of this achievement in the backfill's tenants (the filter names both) that it does not imply.
    for (const k of await d.records.keys(`${o.scope === "*" ? (o.tenant ?? "*") : o.scope}.*.${id}.>`)) {
      const tenant = k.slice(0, k.indexOf("."));
      if (!applies(tenant) || impliedKeys.has(k)) continue;
      lost++;
      if (report.samples.would_lose.length < SAMPLES) report.samples.would_lose.push(k);
    }
    report.would_lose = lost;
  }
  cp.finished = true;
  await d.store.saveCheckpoint(key, cp, revision);
  return finish(d, report, "done", t0);
}

/** Attempts at marking a user's state while a worker writes it too. */
const MARK_ATTEMPTS = 10;

/**
 * Marks a backfilled unlock in its user's state, with compare-and-set (a
 * worker holding the user retries its own write on the new revision): the
 * workers then never unlock it again (which would publish it a second time
 * once the unlocks stream's duplicate window has passed), and prerequisites
 * and composites see it. Nothing is written when the state has it already.
 */
async function markUnlocked(kv: KvStore, u: Unlock, report: BackfillReport): Promise<void> {
  const key = userKey(u.tenant_id, u.user_id);
  for (let attempt = 1; ; attempt++) {
    const e = await kv.get(key);
    let state: UserState;
    try {
      state = e && e.operation === "PUT" && e.length > 0 ? decodeState(e.value) : emptyUserState();
    } catch {
      // Reported, not thrown: the unlock is recorded; `achd users rebuild` mends the state and keeps it.
      if (!report.unreadable_states.includes(key) && report.unreadable_states.length < SAMPLES) report.unreadable_states.push(key);
      return;
    }
    const next = withUnlock(state, u);
    if (!next) return;
    try {
      if (e) await kv.update(key, encodeState(next), e.revision);
      else await kv.create(key, encodeState(next));
      return;
    } catch (err) {
      if (!isCasFailure(err) || attempt >= MARK_ATTEMPTS) throw err;
    }
  }
}

async function finish(d: BackfillDeps, report: BackfillReport, status: "done" | "cancelled", t0: number): Promise<BackfillReport> {
  const seconds = (performance.now() - t0) / 1000;
  report.status = status;
  report.coverage.seconds = Number(seconds.toFixed(3));
  report.coverage.events_per_second = seconds > 0 ? Math.round(report.coverage.events / seconds) : 0;
  await d.store.save(report);
  return report;
}

/** A backfill report as markdown. */
export function backfillMarkdown(r: BackfillReport): string {
  const lines = [
    `## Backfill ${r.id}: ${r.rule_id} v${r.version}${r.scope ? `, tenant ${r.scope}` : ", shared rules"}${r.from ? ` from ${r.from}` : ""} — ${r.status}`,
    "",
    `seq ${r.coverage.from_seq}–${r.coverage.to_seq}: ${r.coverage.events} events, ${r.coverage.users} users, in ${r.coverage.seconds} s; at most ${r.rate} unlocks/s${r.resumed_at !== undefined ? `; resumed after ${r.resumed_at} unlocks` : ""}`,
    "",
    "| achievement | tier | implied | recorded now | recorded before |",
    "|---|---|---:|---:|---:|",
    ...r.by_tier.map((t) => `| ${t.achievement_id} | ${t.tier ?? "–"} | ${t.implied} | ${t.recorded} | ${t.already_recorded} |`),
    "",
    `Recorded ${r.recorded} backdated unlocks (marked backfill: true); ${r.already_recorded} were recorded already.` +
      (r.would_lose === null ? "" : ` ${r.would_lose} recorded unlocks are not implied by this version: kept (unlocks are never revoked).`),
  ];
  return `${lines.join("\n")}\n`;
}

/**
 * One user's history: what they had "as of" an event time, computed from
 * the log, and a rebuild of their stored state from the log (for a state
 * that is corrupt, or that a backfill left without its unlocks).
 */
import type { JetStreamClient, JetStreamManager, PubAck } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { decodeState, emptyUserState, encodeState, unlockedKey, userKey, withUnlock, type FingerprintSpec, type SeenChunk, type UnlockEvent, type UserState } from "../core/mod.ts";
import { decodeMessage, type EventLimits } from "../events/mod.ts";
import { isCasFailure } from "../nats/mod.ts";
import { UnlockSink, unlockPublisher } from "../pipeline/unlocks.ts";
import type { UnlockRecords } from "../pipeline/unlock-records.ts";
import { progressOf, type EvalState, type Progress, type RuleBook, type RuleSet, type Unlock } from "../rules/mod.ts";
import { InMemoryEvaluator } from "../sim/mod.ts";
import { SeenArchive } from "../state/mod.ts";
import { periodLabel } from "../util/time.ts";
import { messageOf, reportId, type HistoryStore, type ReportBase } from "./reports.ts";
import { fileThenStream, streamEvents, streamHorizon, type Horizon } from "./source.ts";

/** How a user's events are decoded and evaluated: as the workers do. */
export type UserEvalOptions = {
  book: RuleBook;
  maxBytes: number;
  partitions: number;
  limits?: Partial<EventLimits> | undefined;
  recentIds: number;
  fingerprints: readonly FingerprintSpec[];
  /** A history export read before the stream. */
  file?: string | undefined;
  /** Stops reading when aborted (a client gone): what was read is evaluated. */
  signal?: AbortSignal | undefined;
};

/** What reading one user's events gave. */
export type UserRun = {
  state: UserState;
  unlocks: Unlock[];
  /** Archived id chunks the run produced (numbered from 0). */
  chunks: SeenChunk[];
  events: number;
  rejected: number;
  duplicates: number;
  from_seq: number;
  to_seq: number;
};

/**
 * Evaluates one user's stored events in stream order, as replay does (the
 * in-memory evaluator, both phases at once), keeping those `keep` accepts.
 * The user's events are read through a subject filter: the server sends
 * nothing else.
 */
async function evaluateUser(js: JetStreamClient, jsm: JetStreamManager, tenant: string, user: string, o: UserEvalOptions, keep: (occurredAt: number) => boolean = () => true): Promise<UserRun> {
  const ev = new InMemoryEvaluator(o.book, o.recentIds, o.fingerprints);
  const out = { events: 0, rejected: 0, from_seq: 0, to_seq: 0 };
  const range = { tenant, user };
  for await (const e of o.file ? fileThenStream(o.file, js, jsm, range) : streamEvents(js, jsm, range)) {
    if (o.signal?.aborted) break;
    out.events++;
    if (!out.from_seq) out.from_seq = e.seq;
    out.to_seq = e.seq;
    const res = decodeMessage(e.subject, e.data, e.msgId, { maxBytes: o.maxBytes, partitions: o.partitions, limits: o.limits, storedAt: e.storedAt });
    if (!res.ok) out.rejected++;
    else if (keep(res.value.occurredAt)) ev.apply(res.value, e.seq);
  }
  const key = userKey(tenant, user);
  return { ...out, state: ev.states.get(key) ?? emptyUserState(), unlocks: ev.unlocks, chunks: ev.chunksOf(key), duplicates: ev.duplicates };
}

/** An unlocked achievement as the achievements API shows it. */
export type UnlockedView = {
  achievement_id: string;
  tier: string | null;
  rule_id: string;
  rule_version: number;
  unlock_id: string;
  unlocked_at: string;
  occurrence: number;
  period?: string;
  title?: string;
};

/** The unlocked list of a user's evaluator state, oldest first, with titles and periods from `set`. */
export function unlockedView(state: EvalState, set: RuleSet): UnlockedView[] {
  const out = Object.values(state.unlocked).map((u) => {
    const rule = set.byId.get(u.rule_id)?.rule;
    return {
      achievement_id: u.rule_id,
      tier: u.tier,
      rule_id: u.rule_id,
      rule_version: u.rule_version,
      unlock_id: u.unlock_id,
      unlocked_at: u.unlocked_at,
      occurrence: u.occurrence,
      ...(rule?.repeatable ? { period: periodLabel(u.occurrence, rule.repeatable.every) } : {}),
      ...(rule?.title ? { title: rule.title } : {}),
    };
  });
  return out.sort((a, b) => a.unlocked_at.localeCompare(b.unlocked_at) || a.achievement_id.localeCompare(b.achievement_id));
}

/** A user's achievements at an event time, computed from the log. */
export type AsOf = {
  tenant_id: string;
  user_id: string;
  as_of: string;
  /** Always "history": computed from the stored events, not read from the live state. */
  computed_from: "history";
  coverage: { from_seq: number; to_seq: number; events: number; applied_before: number; rejected: number; duplicates: number; horizon: Horizon; file?: string };
  unlocked: UnlockedView[];
  in_progress: Progress[];
};

/**
 * What `user` had unlocked, and how far along the rest were, at event time
 * `at`: their events that occurred at or before `at` (as stored, in stream
 * order, however late they arrived), under the rule versions in force at
 * each event's time; progress is read under the versions in force at `at`.
 */
export async function userAsOf(js: JetStreamClient, jsm: JetStreamManager, tenant: string, user: string, at: number, o: UserEvalOptions): Promise<AsOf> {
  const horizon = await streamHorizon(jsm);
  let before = 0;
  const r = await evaluateUser(js, jsm, tenant, user, o, (t) => (t <= at ? ++before > 0 : false));
  const set = o.book.forTenant(tenant).at(at);
  return {
    tenant_id: tenant,
    user_id: user,
    as_of: new Date(at).toISOString(),
    computed_from: "history",
    coverage: { from_seq: r.from_seq, to_seq: r.to_seq, events: r.events, applied_before: before, rejected: r.rejected, duplicates: r.duplicates, horizon, ...(o.file ? { file: o.file } : {}) },
    unlocked: unlockedView(r.state.eval, set),
    in_progress: progressOf(r.state.eval, set, at),
  };
}

/** The log no longer holds all of a user's history: a rebuild would lose what it cannot see. */
export class HistoryIncompleteError extends Error {
  override name = "HistoryIncompleteError";
  constructor(
    message: string,
    readonly details: { horizon: Horizon; recorded_unlocks: number; progress_at_risk: string[] },
  ) {
    super(message);
  }
}

export type RebuildDeps = {
  js: JetStreamClient & { publish(subject: string, data: Uint8Array, opts: { msgID: string }): Promise<PubAck> };
  jsm: JetStreamManager;
  state: KV;
  seen: KV;
  /** The unlock records (the unlocks stream). */
  records: Pick<UnlockRecords, "entries">;
  store: HistoryStore;
};

export type RebuildReport = ReportBase & {
  kind: "rebuild";
  tenant_id: string;
  user_id: string;
  /** What was stored before: "none", "corrupt: <why>", or its revision. */
  previous: string;
  revision: number;
  coverage: { from_seq: number; to_seq: number; events: number; rejected: number; duplicates: number; horizon: Horizon; file?: string; forced: boolean };
  /** Rules whose state differs from the stored one (all of them when it was unreadable). */
  rules_changed: string[];
  unlocked_added: string[];
  /** Achievements the stored state had unlocked that the log does not give and that have no record: gone with the old state. */
  unlocked_dropped: string[];
  /** Recorded unlocks the log does not give (backfilled, or under retired versions), kept in the state. */
  kept_from_records: string[];
  /** Unlocks the log gives that had no record: published and recorded now (their events had failed on the broken state). */
  delivered: string[];
};


/** Rebuilds attempted when a worker writes the user's state meanwhile. */
const ATTEMPTS = 5;

/**
 * Recomputes a user's state from their events in the log under the rule
 * versions in force, and replaces the stored state with compare-and-set (a
 * worker writing meanwhile makes it start over on the newer log). Every
 * recorded unlock is kept in the state (unlocks are never revoked);
 * unlocks the log gives without a record are delivered. Refuses when the
 * events stream no longer holds all history, unless `force`.
 */
export async function rebuildUser(d: RebuildDeps, tenant: string, user: string, o: UserEvalOptions & { force?: boolean }): Promise<RebuildReport> {
  const key = userKey(tenant, user);
  const horizon = await streamHorizon(d.jsm);
  const records = await d.records.entries(`${tenant}.${user}.>`);
  if (!horizon.complete && !o.force && !o.file) {
    const e = await d.state.get(key);
    let atRisk: string[] = [];
    try {
      if (e && e.operation === "PUT") atRisk = Object.keys(decodeState(e.value).eval.rules).sort();
    } catch {
      atRisk = ["(the stored state cannot be read: what it counted is unknown)"];
    }
    throw new HistoryIncompleteError(
      `the events stream no longer holds all history: it starts at seq ${horizon.first_seq}${horizon.oldest_stored_at ? ` (stored ${horizon.oldest_stored_at})` : ""}, and events before it are gone (events.maxAge ${Math.round(horizon.max_age_ms / 3_600_000)} h, or purged). ` +
        `A rebuild of ${tenant}/${user} would count only what is left: progress on ${atRisk.length ? atRisk.join(", ") : "no rule"} from older events would be lost; ` +
        `the ${records.size} recorded unlocks are kept either way. Bring older events back with an export (--from-file), or rebuild anyway (--force, or "force": true)`,
      { horizon, recorded_unlocks: records.size, progress_at_risk: atRisk },
    );
  }
  for (let attempt = 1; ; attempt++) {
    const e = await d.state.get(key);
    let previous = "none";
    let old: UserState | undefined;
    if (e && e.operation === "PUT" && e.length > 0) {
      try {
        old = decodeState(e.value);
        previous = `revision ${e.revision}`;
      } catch (err) {
        previous = `corrupt: ${messageOf(err)}`;
      }
    }
    const run = await evaluateUser(d.js, d.jsm, tenant, user, o);
    let state = run.state;
    // Recorded unlocks the log does not give stay unlocked (repeatable ones are kept by their records alone).
    const kept: string[] = [];
    for (const body of records.values()) {
      const next = body.period ? undefined : withUnlock(state, body);
      if (!next) continue;
      state = next;
      kept.push(unlockedKey(body));
    }
    const recordedIds = new Set([...records.values()].map((b) => b.unlock_id));
    const undelivered = run.unlocks.filter((u) => !recordedIds.has(u.unlock_id));
    // Chunks numbered after every chunk the user has: workers cache chunks by key, so a key is never rewritten with other content.
    const offset = await nextChunk(d.seen, key);
    const next: UserState = {
      ...state,
      ...(state.arch ? { arch: { e: state.arch.e.map(([n, a, b]) => [n + offset, a, b] as [number, number, number]), o: state.arch.o.map(([n, a, b]) => [n + offset, a, b] as [number, number, number]) } } : {}),
      outbox: undelivered,
    };
    const archive = new SeenArchive(d.seen);
    for (const c of run.chunks) await archive.write(key, { ...c, n: c.n + offset });
    let revision: number;
    try {
      revision = e ? await d.state.update(key, encodeState(next), e.revision) : await d.state.create(key, encodeState(next));
    } catch (err) {
      if (isCasFailure(err) && attempt < ATTEMPTS) continue;
      throw err;
    }
    // As a worker would after its write: publish (create-only) each unlock the state holds in its outbox.
    const sink = new UnlockSink(unlockPublisher(d.js));
    for (const u of undelivered) await sink.deliver(u);
    const before = old?.eval;
    const created = new Date();
    const report: RebuildReport = {
      kind: "rebuild",
      id: reportId("rebuild", created),
      created_at: created.toISOString(),
      status: "done",
      tenant_id: tenant,
      user_id: user,
      previous,
      revision,
      coverage: { from_seq: run.from_seq, to_seq: run.to_seq, events: run.events, rejected: run.rejected, duplicates: run.duplicates, horizon, ...(o.file ? { file: o.file } : {}), forced: Boolean(o.force) && !horizon.complete },
      rules_changed: [...new Set([...Object.keys(next.eval.rules), ...Object.keys(before?.rules ?? {})])].filter((r) => JSON.stringify(next.eval.rules[r]) !== JSON.stringify(before?.rules[r])).sort(),
      unlocked_added: Object.keys(next.eval.unlocked).filter((k) => !before?.unlocked[k]).sort(),
      unlocked_dropped: Object.keys(before?.unlocked ?? {}).filter((k) => !next.eval.unlocked[k]).sort(),
      kept_from_records: kept.sort(),
      delivered: undelivered.map((u) => u.unlock_id),
    };
    await d.store.save(report);
    return report;
  }
}

/** The first chunk number above every archived chunk the user has (0 when none). */
async function nextChunk(seen: KV, key: string): Promise<number> {
  let n = -1;
  for await (const k of await seen.keys(`${key}.>`)) n = Math.max(n, Number(k.split(".").pop()));
  return n + 1;
}

/**
 * Shadow runs: a candidate version of a rule evaluated over the stored
 * history beside the versions in force, without writing anything, and the
 * difference reported per achievement and tier (who would gain an unlock,
 * who would lose one, whose unlock time would move).
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { unlockRecordKey } from "../core/mod.ts";
import { replayStream, type ReplayOptions } from "../replay/mod.ts";
import { checkRuleBook, RuleBook, RulesError, type RuleVersion, type Unlock } from "../rules/mod.ts";
import { reportId, saveFailed, type HistoryStore, type ReportBase } from "./reports.ts";
import { appliesTo } from "./versions.ts";
import { streamHorizon, type Horizon } from "./source.ts";

/** Samples kept per achievement, tier and kind of change. */
export const SAMPLES = 10;

/**
 * The book with one rule's versions in `scope` (a tenant, or `*`) replaced
 * by `version`, in force over all of history. Refuses a candidate that does
 * not fit with the rest of the rules (a composite naming a missing
 * achievement, a cycle).
 */
export function withVersion(book: RuleBook, scope: string, version: RuleVersion): RuleBook {
  const id = version.rule.id;
  const v: RuleVersion = { ...version, effectiveFrom: Number.NEGATIVE_INFINITY };
  const shared: RuleVersion[] = [];
  const tenants = new Map<string, RuleVersion[]>();
  for (const { tenant, version: x } of book.all()) {
    if (tenant === scope && x.rule.id === id) continue;
    if (tenant === "*") shared.push(x);
    else tenants.set(tenant, [...(tenants.get(tenant) ?? []), x]);
  }
  if (scope === "*") shared.push(v);
  else tenants.set(scope, [...(tenants.get(scope) ?? []), v]);
  const out = new RuleBook(shared, tenants);
  const issues = checkRuleBook(out).filter((i) => scope === "*" || i.tenant === scope);
  if (issues.length) throw new RulesError(issues.map((i) => ({ file: `(candidate ${id}@${version.version})`, rule: i.rule, path: i.path, reason: i.reason })));
  return out;
}

/** One unlock as a sample in a report. */
export type UnlockSample = { tenant_id: string; user_id: string; unlock_id: string; occurrence: number; unlocked_at: string; rule_version: number; trigger_event_ids: string[] };
/** A user whose unlock time moves: when, and by which events, under each book. */
export type MoveSample = { tenant_id: string; user_id: string; unlock_id: string; occurrence: number; now: Omit<UnlockSample, "tenant_id" | "user_id" | "unlock_id" | "occurrence">; candidate: Omit<UnlockSample, "tenant_id" | "user_id" | "unlock_id" | "occurrence"> };

/** The difference for one achievement and tier. */
export type ShadowRow = {
  achievement_id: string;
  tier: string | null;
  /** Unlocks under the versions in force, and under the candidate. */
  now: number;
  candidate: number;
  /** Unlocks only the candidate gives, only the versions in force give, and given by both at another time; with distinct users. */
  gain: number;
  lose: number;
  move: number;
  gain_users: number;
  lose_users: number;
  move_users: number;
  samples: { gain: UnlockSample[]; lose: UnlockSample[]; move: MoveSample[] };
};

/** An unlock as a report's sample. */
export const unlockSample = (u: Unlock): UnlockSample => ({ tenant_id: u.tenant_id, user_id: u.user_id, unlock_id: u.unlock_id, occurrence: u.occurrence, unlocked_at: u.unlocked_at, rule_version: u.rule_version, trigger_event_ids: u.trigger_event_ids });
const when = (u: Unlock) => ({ unlocked_at: u.unlocked_at, rule_version: u.rule_version, trigger_event_ids: u.trigger_event_ids });

/**
 * Compares two evaluations of the same history, unlock by unlock (same
 * tenant, user, achievement, tier and occurrence): rows for every
 * achievement and tier either gives, sorted by achievement and tier. Pure.
 */
function diffUnlocks(now: readonly Unlock[], candidate: readonly Unlock[], samples: number): ShadowRow[] {
  const rows = new Map<string, ShadowRow & { users: { gain: Set<string>; lose: Set<string>; move: Set<string> } }>();
  const row = (u: Unlock) => {
    const k = `${u.achievement_id}\u0000${u.tier ?? ""}`;
    let r = rows.get(k);
    if (!r) {
      r = { achievement_id: u.achievement_id, tier: u.tier, now: 0, candidate: 0, gain: 0, lose: 0, move: 0, gain_users: 0, lose_users: 0, move_users: 0, samples: { gain: [], lose: [], move: [] }, users: { gain: new Set(), lose: new Set(), move: new Set() } };
      rows.set(k, r);
    }
    return r;
  };
  const mine = new Map(now.map((u) => [unlockRecordKey(u), u]));
  const theirs = new Map(candidate.map((u) => [unlockRecordKey(u), u]));
  for (const [k, u] of mine) {
    const r = row(u);
    r.now++;
    const c = theirs.get(k);
    const user = `${u.tenant_id}.${u.user_id}`;
    if (!c) {
      r.lose++;
      r.users.lose.add(user);
      if (r.samples.lose.length < samples) r.samples.lose.push(unlockSample(u));
    } else if (c.unlocked_at !== u.unlocked_at) {
      r.move++;
      r.users.move.add(user);
      if (r.samples.move.length < samples) r.samples.move.push({ tenant_id: u.tenant_id, user_id: u.user_id, unlock_id: u.unlock_id, occurrence: u.occurrence, now: when(u), candidate: when(c) });
    }
  }
  for (const [k, c] of theirs) {
    const r = row(c);
    r.candidate++;
    if (mine.has(k)) continue;
    r.gain++;
    r.users.gain.add(`${c.tenant_id}.${c.user_id}`);
    if (r.samples.gain.length < samples) r.samples.gain.push(unlockSample(c));
  }
  return [...rows.values()]
    .map(({ users, ...r }) => ({ ...r, gain_users: users.gain.size, lose_users: users.lose.size, move_users: users.move.size }))
    .sort((a, b) => (a.achievement_id < b.achievement_id ? -1 : a.achievement_id > b.achievement_id ? 1 : (a.tier ?? "") < (b.tier ?? "") ? -1 : (a.tier ?? "") > (b.tier ?? "") ? 1 : 0));
}

/** What a history run covered: the stream range, the events and users read, how long it took, and the horizon. */
export type Coverage = {
  from_seq: number;
  to_seq: number;
  events: number;
  users: number;
  rejected: number;
  duplicates: number;
  seconds: number;
  events_per_second: number;
  /** The events stream's horizon: how far back history goes. */
  horizon: Horizon;
  /** A history export read before the stream. */
  file?: string;
  tenant: string | null;
};

export type ShadowReport = ReportBase & {
  kind: "shadow";
  rule_id: string;
  /** The tenant whose rules the candidate joins, or null for the shared rules. */
  scope: string | null;
  candidate: { version: number; from: string };
  /** The versions of the rule in force over the history read (by event time). */
  in_force: number[];
  coverage: Coverage;
  totals: { gain: number; lose: number; move: number; gain_users: number; lose_users: number; move_users: number };
  achievements: ShadowRow[];
};

export type ShadowOptions = Omit<ReplayOptions, "candidate" | "book"> & {
  book: RuleBook;
  /** Where the candidate joins: a tenant, or `*` for the shared rules. */
  scope: string;
  version: RuleVersion;
  /** Where the candidate came from (a file, `id@version`, the API), for the report. */
  from: string;
  samples?: number | undefined;
  /** Where the report is kept: saved as running at the start, then done, cancelled or failed. */
  store?: HistoryStore | undefined;
  /** Told the report's id once it is saved as running. */
  onStart?: ((id: string) => void) | undefined;
};

/**
 * Evaluates the stored history under the book and, beside it, under the
 * book with the candidate version in force: one read, nothing written.
 */
export async function shadowRun(js: JetStreamClient, jsm: JetStreamManager, o: ShadowOptions): Promise<ShadowReport> {
  const candidate = withVersion(o.book, o.scope, o.version);
  const created = new Date();
  const base = { kind: "shadow" as const, id: reportId("shadow", created), created_at: created.toISOString(), status: "running" as const, rule_id: o.version.rule.id, scope: o.scope === "*" ? null : o.scope, candidate: { version: o.version.version, from: o.from } };
  // Saved as running first: listed meanwhile, and the caller can cancel it by its id.
  if (o.store) await o.store.save(base);
  o.onStart?.(base.id);
  try {
    const horizon = await streamHorizon(jsm);
    const t0 = performance.now();
    const r = await replayStream(js, jsm, { ...o, candidate });
    const seconds = (performance.now() - t0) / 1000;
    const rows = diffUnlocks(r.unlocks, r.candidate ?? [], o.samples ?? SAMPLES);
    // Versions of the candidate's own scope only: a tenant's own version of a shared rule is another rule.
    const applies = appliesTo(o.book, o.scope, o.version.rule.id);
    const inForce = new Set<number>();
    for (const u of r.unlocks) if (u.rule_id === o.version.rule.id && applies(u.tenant_id)) inForce.add(u.rule_version);
    const scoped = o.scope === "*" ? o.book.all().filter((x) => x.tenant === "*").map((x) => x.version) : o.book.forTenant(o.scope).history().map((h) => h.version);
    for (const v of scoped) if (v.rule.id === o.version.rule.id && v.rule.enabled) inForce.add(v.version);
    const sum = (k: keyof ShadowReport["totals"]) => rows.reduce((a, x) => a + x[k], 0);
    const report: ShadowReport = {
      ...base,
      status: r.cancelled ? "cancelled" : "done",
      in_force: [...inForce].sort((a, b) => a - b),
      coverage: {
        from_seq: r.fromSeq,
        to_seq: r.toSeq,
        events: r.events,
        users: r.users,
        rejected: r.rejected,
        duplicates: r.duplicates,
        seconds: Number(seconds.toFixed(3)),
        events_per_second: seconds > 0 ? Math.round(r.events / seconds) : 0,
        horizon,
        ...(o.file ? { file: o.file } : {}),
        tenant: o.tenant ?? null,
      },
      totals: { gain: sum("gain"), lose: sum("lose"), move: sum("move"), gain_users: sum("gain_users"), lose_users: sum("lose_users"), move_users: sum("move_users") },
      achievements: rows,
    };
    if (o.store) await o.store.save(report);
    return report;
  } catch (err) {
    if (o.store) await saveFailed(o.store, base, err);
    throw err;
  }
}

const cell = (n: number, users: number) => (n === 0 ? "0" : users === n ? String(n) : `${n} (${users} users)`);

/** A coverage line for people: range, events, users, time and horizon. */
function coverageLine(c: Coverage): string {
  const h = c.horizon;
  const horizon = h.complete ? "the stream holds all history" : `the stream holds events from seq ${h.first_seq}${h.oldest_stored_at ? ` (${h.oldest_stored_at})` : ""}; older ones are gone`;
  const age = h.max_age_ms ? `kept ${Math.round(h.max_age_ms / 3_600_000)} h` : "kept without age limit";
  return `seq ${c.from_seq}–${c.to_seq}${c.tenant ? `, tenant ${c.tenant}` : ""}${c.file ? `, from ${c.file} then the stream` : ""}: ${c.events} events, ${c.users} users, ${c.rejected} rejected, ${c.duplicates} duplicates, in ${c.seconds} s (${c.events_per_second} events/s); ${horizon}, ${age}`;
}

/** A shadow report as markdown: a table per achievement and tier, then samples. */
export function shadowMarkdown(r: ShadowReport): string {
  const lines = [
    `## Shadow run ${r.id}: ${r.rule_id} v${r.candidate.version} (${r.candidate.from}) beside v${r.in_force.join(", v") || "(none)"}${r.scope ? `, tenant ${r.scope}` : ", shared rules"}${r.status === "cancelled" ? " — CANCELLED, partial" : ""}`,
    "",
    coverageLine(r.coverage),
    "",
    "| achievement | tier | now | candidate | gain | lose | moved |",
    "|---|---|---:|---:|---:|---:|---:|",
    ...r.achievements.map((a) => `| ${a.achievement_id} | ${a.tier ?? "–"} | ${a.now} | ${a.candidate} | ${cell(a.gain, a.gain_users)} | ${cell(a.lose, a.lose_users)} | ${cell(a.move, a.move_users)} |`),
    "",
    `Total: ${r.totals.gain_users} users gain, ${r.totals.lose_users} lose, ${r.totals.move_users} move.`,
  ];
  for (const a of r.achievements) {
    const tag = `${a.achievement_id}${a.tier ? `:${a.tier}` : ""}`;
    for (const s of a.samples.gain) lines.push(`- gain ${tag}: ${s.tenant_id}/${s.user_id} at ${s.unlocked_at} (events ${s.trigger_event_ids.join(", ")})`);
    for (const s of a.samples.lose) lines.push(`- lose ${tag}: ${s.tenant_id}/${s.user_id}, had it at ${s.unlocked_at} (events ${s.trigger_event_ids.join(", ")})`);
    for (const s of a.samples.move) lines.push(`- move ${tag}: ${s.tenant_id}/${s.user_id} ${s.now.unlocked_at} → ${s.candidate.unlocked_at} (events ${s.candidate.trigger_event_ids.join(", ")})`);
  }
  return `${lines.join("\n")}\n`;
}

import type { EventInput } from "../src/events/mod.ts";

/** The shape of a benchmark stream; printed with every result. */
export type Workload = {
  events: number;
  users: number;
  tenants: number;
  /** Zipf exponent of user activity: user of rank r is picked with weight 1/r^s. */
  zipf: number;
  /** Sessions open at once: events of a session are close together in the stream, as in real traffic. */
  concurrentSessions: number;
  /** Mean events per session (the first is always `app.opened`). */
  sessionMean: number;
  /** Event-time span the stream covers, in days. */
  days: number;
  seed: number;
};

export const DEFAULT_WORKLOAD: Workload = { events: 500_000, users: 100_000, tenants: 4, zipf: 1.1, concurrentSessions: 64, sessionMean: 4, days: 30, seed: 7 };

/** Mulberry32: small, fast, deterministic. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Samples ranks 0..n-1 with weight 1/(rank+1)^s (binary search over the cumulative weights). */
export function zipfSampler(n: number, s: number, rnd: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let r = 0; r < n; r++) cdf[r] = sum += 1 / Math.pow(r + 1, s);
  return () => {
    const x = rnd() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

const START = Date.UTC(2026, 2, 1);
const COURSES = ["algebra", "biology", "chemistry", "design", "english", "french", "geometry", "history"];
const ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"];

type Session = { tenant: string; user: string; rank: number; at: number; left: number; funnel: number; step: number };

/**
 * A deterministic stream of `w.events` events. Returning users are drawn by
 * Zipf rank (a few heavy users, a long tail); each draw opens a session of a few
 * events a minute or two apart, interleaved with the other open sessions.
 * Event time moves forward over `w.days` days, with the small disorder that
 * interleaving gives. New users join all along (every user appears); a
 * user's first session walks part of the onboarding funnel.
 */
export function* workload(w: Workload): Generator<EventInput> {
  const rnd = prng(w.seed);
  const pickUser = zipfSampler(w.users, w.zipf, rnd);
  const sessions: Session[] = [];
  const span = w.days * 86_400_000;
  let joined = 0;
  const open = (i: number): Session => {
    // New users join at the rate that brings every user in by the end; the others come back by Zipf rank among those joined.
    const sessionsLeft = Math.max(1, (w.events - i) / w.sessionMean);
    const first = joined < w.users && (joined === 0 || rnd() < (w.users - joined) / sessionsLeft);
    const rank = first ? joined++ : pickUser() % joined;
    // Event time advances with the stream position; sessions start within a few minutes of "now".
    const at = START + Math.floor((i / w.events) * span) + Math.floor(rnd() * 300_000);
    const left = 1 + Math.floor(-Math.log(1 - rnd()) * (w.sessionMean - 1));
    // Onboarding funnel: everyone signs up, fewer complete each later step.
    let funnel = 1;
    while (first && funnel < ONBOARDING.length && rnd() < 0.7) funnel++;
    return { tenant: `t${rank % w.tenants}`, user: `u${rank}`, rank, at, left: first ? Math.max(left, funnel + 1) : left, funnel: first ? funnel : 0, step: 0 };
  };
  for (let i = 0; i < w.events; i++) {
    while (sessions.length < w.concurrentSessions) sessions.push(open(i));
    const k = Math.floor(rnd() * sessions.length);
    const s = sessions[k]!;
    const e = sessionEvent(s, rnd);
    s.left--;
    s.at += 20_000 + Math.floor(rnd() * 100_000);
    if (s.left <= 0) sessions.splice(k, 1);
    yield {
      event_id: `b${w.seed}-${i}`,
      tenant_id: s.tenant,
      user_id: s.user,
      occurred_at: new Date(e.at).toISOString(),
      event_type: e.type,
      source: e.source,
      payload: e.payload,
      attributes: { plan: s.rank % 5 === 0 ? "pro" : "free", timezone: ZONES[s.rank % ZONES.length]! },
    };
  }
}

const ONBOARDING = ["account.created", "profile.completed", "project.created", "team.invited"];

function sessionEvent(s: Session, rnd: () => number): { type: string; at: number; source: string; payload: Record<string, unknown> } {
  const source = rnd() < 0.6 ? "mobile-app" : "web";
  const n = s.step++;
  // Every session opens the app; a user's first session then walks as far through onboarding as its funnel goes.
  if (n === 0) return { type: "app.opened", at: s.at, source, payload: {} };
  if (n <= s.funnel) return { type: ONBOARDING[n - 1]!, at: s.at, source, payload: {} };
  const x = rnd();
  if (x < 0.4) return { type: "lesson.completed", at: s.at, source, payload: { course: COURSES[Math.floor(rnd() * COURSES.length)], duration_seconds: Math.floor(rnd() * 1500), score: Math.floor(rnd() * 101) } };
  if (x < 0.5) return { type: "quiz.passed", at: s.at, source, payload: { score: 60 + Math.floor(rnd() * 41) } };
  if (x < 0.56) return { type: "purchase.placed", at: s.at, source, payload: { amount: Math.round(rnd() * 50_000) / 100, currency: "EUR" } };
  if (x < 0.72) return { type: "workout.logged", at: s.at, source, payload: { distance_km: Math.round(rnd() * 150) / 10, minutes: 10 + Math.floor(rnd() * 80) } };
  return { type: "page.viewed", at: s.at, source, payload: { path: `/p/${Math.floor(rnd() * 500)}` } };
}

import type { EventInput } from "../src/events/mod.ts";
import { prng } from "./workload.ts";

/** The count workload's rule set: three count rules, rare unlocks. */
export const COUNT_RULES = "config/bench/count-rules.yaml";

/** A uniform stream: `events` events spread evenly at random over `users` users of one tenant. */
export type CountWorkload = { events: number; users: number; seed: number };

export const DEFAULT_COUNT_WORKLOAD: CountWorkload = { events: 200_000, users: 20_000, seed: 11 };

const TYPES = ["lesson.completed", "quiz.passed", "workout.logged"];
const START = Date.parse("2026-03-01T00:00:00Z");

/**
 * The count workload: each event goes to a user drawn uniformly, with one
 * of three event types (each read by one count rule), a second apart in
 * event time. Deterministic for a seed.
 */
export function* countWorkload(w: CountWorkload): Generator<EventInput> {
  const rnd = prng(w.seed);
  for (let i = 0; i < w.events; i++) {
    const u = Math.floor(rnd() * w.users);
    yield {
      event_id: `c${w.seed}-${i}`,
      tenant_id: "t0",
      user_id: `u${u}`,
      occurred_at: new Date(START + i * 1000).toISOString(),
      event_type: TYPES[Math.floor(rnd() * TYPES.length)]!,
      source: "bench",
      payload: { n: i },
    };
  }
}

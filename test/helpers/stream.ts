import { headers, type NatsConnection } from "@nats-io/transport-node";
import { expect } from "vitest";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { EventInput } from "../../src/events/mod.ts";
import { validateEvent } from "../../src/events/mod.ts";
import { applyEvents, emptyUserState, type SeqEvent, type UnlockEvent, type UserState } from "../../src/core/mod.ts";
import type { RuleBook } from "../../src/rules/mod.ts";
import { Streams } from "../../src/nats/mod.ts";

import { prng } from "../../bench/workload.ts";
import { publishEvent } from "../../bench/stack.ts";

// The seeded PRNG the benchmark's workload uses, so every generated stream can be replayed.
export { prng };

let counter = 0;

/** One event; `i` orders event time within a test. */
export function ev(tenant: string, user: string, type: string, payload: Record<string, unknown> = {}, extra: Partial<EventInput> = {}): EventInput {
  counter++;
  return {
    event_id: `evt-${tenant}-${user}-${counter}-${Math.random().toString(36).slice(2, 8)}`,
    event_type: type,
    tenant_id: tenant,
    user_id: user,
    occurred_at: new Date(Date.UTC(2026, 3, 13, 10, 0, 0) + counter * 1000).toISOString(),
    source: "web",
    payload,
    ...extra,
  };
}

/** A mixed stream: `users` users of `tenants`, `n` events of the fixture's types. */
export function generate(seed: number, n: number, users = 20, tenants = ["acme", "globex"]): EventInput[] {
  const rnd = prng(seed);
  const types = ["lesson.completed", "lesson.completed", "lesson.completed", "purchase.placed", "team.invited", "page.viewed"];
  const out: EventInput[] = [];
  for (let i = 0; i < n; i++) {
    const tenant = tenants[Math.floor(rnd() * tenants.length)]!;
    const user = `u${Math.floor(rnd() * users)}`;
    const type = types[Math.floor(rnd() * types.length)]!;
    out.push({
      event_id: `s${seed}-${i}`,
      event_type: type,
      tenant_id: tenant,
      user_id: user,
      occurred_at: new Date(Date.UTC(2026, 3, 13) + i * 1000).toISOString(),
      source: rnd() < 0.5 ? "web" : "mobile-app",
      payload: { duration_seconds: Math.floor(rnd() * 1200) },
      attributes: { plan: rnd() < 0.3 ? "pro" : "free" },
    });
  }
  return out;
}

/** Publishes events over NATS with `Nats-Msg-Id = <tenant>:<user>:<event_id>`. */
export async function publishAll(js: JetStreamClient, events: EventInput[], opts: { msgId?: boolean } = {}): Promise<void> {
  await Promise.all(events.map((e) => publishEvent(js, e, opts.msgId !== false)));
}

/**
 * Publishes one event after another, each retried (every 200 ms, up to 100
 * times) until the stream stores it: for clusters, where a node may be down
 * or cut off and a stream leader being elected.
 */
export async function publishRetrying(js: JetStreamClient, events: EventInput[]): Promise<void> {
  for (const e of events) {
    for (let attempt = 0; ; attempt++) {
      try {
        await publishEvent(js, e);
        break;
      } catch (err) {
        if (attempt > 100) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}

/** Publishes raw bytes on a subject (for malformed input), optionally with a msg id. */
export async function publishRaw(js: JetStreamClient, subject: string, data: Uint8Array | string, msgId?: string, timeout?: number): Promise<void> {
  const h = headers();
  if (msgId) h.set("Nats-Msg-Id", msgId);
  await js.publish(subject, typeof data === "string" ? new TextEncoder().encode(data) : data, { headers: h, ...(timeout ? { timeout } : {}) });
}

/**
 * The oracle: each user's events, deduplicated by event id, in publish order,
 * through the pure evaluator. Returns the final states by `tenant.user`.
 */
export function oracle(events: EventInput[], book: RuleBook): Map<string, UserState> {
  const byUser = new Map<string, SeqEvent[]>();
  const seen = new Set<string>();
  events.forEach((e, i) => {
    if (seen.has(e.event_id)) return;
    seen.add(e.event_id);
    const r = validateEvent(e);
    if (!r.ok) return;
    const key = `${e.tenant_id}.${e.user_id}`;
    byUser.set(key, [...(byUser.get(key) ?? []), { seq: i + 1, ev: r.value }]);
  });
  const out = new Map<string, UserState>();
  for (const [key, items] of byUser) {
    const tenant = key.split(".")[0]!;
    out.set(key, applyEvents(emptyUserState(), items, book.forTenant(tenant), 1000).state);
  }
  return out;
}

/** Every unlock event stored in the unlocks stream. */
export async function storedUnlocks(nc: NatsConnection, js: JetStreamClient): Promise<UnlockEvent[]> {
  void nc;
  const c = await js.consumers.get(Streams.Unlocks);
  const info = await c.info();
  const total = info.num_pending;
  const out: UnlockEvent[] = [];
  if (total === 0) return out;
  const msgs = await c.fetch({ max_messages: total, expires: 5000 });
  for await (const m of msgs) {
    out.push(m.json<UnlockEvent>());
    if (out.length === total) break;
  }
  return out;
}

/** Nothing lost, nothing doubled: the stored unlock events are exactly the oracle's for `events`, each once. */
export async function expectOracleUnlocks(nc: NatsConnection, js: JetStreamClient, events: EventInput[], book: RuleBook): Promise<void> {
  const want = oracle(events, book);
  const stored = (await storedUnlocks(nc, js)).map((u) => u.unlock_id);
  expect(new Set(stored).size, "an unlock stored twice").toBe(stored.length);
  expect(stored.sort()).toEqual([...want.values()].flatMap((s) => Object.values(s.eval.unlocked).map((u) => u.unlock_id)).sort());
}

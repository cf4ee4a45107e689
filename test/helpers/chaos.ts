/** The semantics checker's plan, publisher and replays (shared with ad-hoc runs). */
import { Kvm } from "@nats-io/kv";
import { loadConfig } from "../../src/config/mod.ts";
import { startEngine } from "../../src/engine.ts";
import { eventMsgId, eventSubject, type EventInput } from "../../src/events/mod.ts";
import { Buckets, ensureTopology } from "../../src/nats/mod.ts";
import { decodeState, encodeState, type UserState } from "../../src/core/mod.ts";
import { createLogger } from "../../src/util/log.ts";
import { mix, type Delivery } from "../fixtures/streams/generators.ts";
import { eventually, fixture } from "./engine.ts";
import { drained as drainedPartitions, startTestNats, type TestNats } from "./nats.ts";
import { publishRaw } from "./stream.ts";

export const SEED = Number(process.env.ACH_SEED ?? Date.now() % 1_000_000);
export const SCALE = Number(process.env.ACH_CHAOS_SCALE ?? 1);
export const TENANT = "chaos";
export const RULES = fixture("chaos/rules.yaml");
export const CONFIG = fixture("chaos/achd.yaml");
export const config = loadConfig({ ACH_CONFIG: CONFIG }, { rules: RULES });
export const WINDOW = config.reorder.window;
export const PARTITIONS = config.partitions;
export const say = (...a: unknown[]) => process.env.ACH_CHAOS_VERBOSE && console.log(new Date().toISOString(), ...a);

/** The publication plan: chunks of deliveries; shuffles stay inside a chunk, server restarts fall between chunks. */
export function plan(rnd: () => number) {
  const scenarios = mix(rnd, TENANT, SCALE);
  const events = scenarios.flatMap((s) => s.events);
  const delayable = new Set(scenarios.flatMap((s) => [...s.delayable]));
  const malformed = scenarios.flatMap((s) => s.malformed);
  const deliver = (e: EventInput): Delivery => ({ subject: eventSubject(e.tenant_id, e.user_id, e.event_type), body: JSON.stringify(e), msgId: eventMsgId(e.tenant_id, e.user_id, e.event_id), eventId: e.event_id });
  // Event-time order, shuffled by less than the reorder window.
  const onTime = events
    .filter((e) => !delayable.has(e.event_id))
    .map((e) => ({ e, key: Date.parse(e.occurred_at) + rnd() * WINDOW * 0.5 }))
    .sort((a, b) => a.key - b.key)
    .map((x) => x.e);
  const stream: Delivery[] = [];
  for (const e of onTime) {
    const copies = 1 + Math.floor(rnd() * 3);
    for (let c = 0; c < copies; c++) {
      const d = deliver(e);
      // Some copies come as a retry after JetStream's duplicate window would: no msg id, so only the engine's own record stops them.
      if (c > 0 && rnd() < 0.4) delete d.msgId;
      stream.push(d);
    }
  }
  // A duplicate storm: one event published fifty times.
  if (onTime.length) for (let i = 0; i < 50; i++) stream.push(deliver(onTime[Math.floor(rnd() * onTime.length)]!));
  for (const m of malformed) stream.splice(Math.floor(rnd() * stream.length), 0, m);
  // Delayed far beyond the window: their rules do not depend on order.
  for (const e of events.filter((x) => delayable.has(x.event_id))) stream.push(deliver(e));
  const chunks: Delivery[][] = [];
  const size = Math.ceil(stream.length / (22 * SCALE));
  for (let i = 0; i < stream.length; i += size) chunks.push(stream.slice(i, i + size));
  return { scenarios, events, malformed, chunks };
}

export async function publish(nats: TestNats, d: Delivery): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await publishRaw(nats.js, d.subject, d.body, d.msgId, 2000);
      return;
    } catch (err) {
      // The server is restarting: publish again (the msg id makes that safe).
      if (attempt > 200) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function drained(nats: TestNats): Promise<true | undefined> {
  return drainedPartitions(nats.jsm, PARTITIONS);
}

export async function states(nats: TestNats): Promise<Map<string, UserState>> {
  const kv = await new Kvm(nats.nc).open(Buckets.State);
  const out = new Map<string, UserState>();
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  for (const k of keys.sort()) {
    const e = await kv.get(k);
    if (e?.value.length) out.set(k, decodeState(e.value));
  }
  return out;
}

/** A state without its outbox (delivery bookkeeping, cleared lazily), as the bytes the store writes. */
export function stateBytes(s: UserState): string {
  return new TextDecoder().decode(encodeState({ ...s, outbox: [] }));
}

/** Publishes every chunk into a fresh server with one in-process engine and no chaos; returns the final states. */
export async function cleanReplay(chunks: Delivery[][]): Promise<Map<string, UserState>> {
  const nats = await startTestNats(PARTITIONS);
  try {
    const cfg = loadConfig({ ACH_CONFIG: CONFIG }, { nats: { url: nats.url }, rules: RULES, http: { enabled: false }, log: { level: "silent" } });
    await ensureTopology(nats.nc, nats.jsm, cfg);
    for (const chunk of chunks) for (const d of chunk) await publish(nats, d);
    const engine = await startEngine(cfg, createLogger("silent"));
    try {
      await eventually(() => drained(nats), 60_000, "clean replay drained");
    } finally {
      await engine.stop();
    }
    return await states(nats);
  } finally {
    await nats.cleanup();
  }
}


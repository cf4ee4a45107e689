import { headers } from "@nats-io/transport-node";
import type { FastifyInstance, FastifySchema } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { actsFor, tooMany } from "./auth.ts";
import { TenantQuotas } from "./quota.ts";
import { ErrorJson, EventJson } from "./docs.ts";
import { Streams } from "../nats/mod.ts";
import type { DeadLetter } from "../pipeline/mod.ts";
import { EVENT_ID, EVENT_TYPE, eventMsgId, eventSubject, ID_TOKEN, parsePartitionedSubject, RejectCodes, validateEvent, type Issue, type ValidEvent } from "../events/mod.ts";
import { fingerprintMatch, fingerprintOf, userKey } from "../core/mod.ts";
import type { ApiContext } from "./context.ts";

/** The outcome of one event of a `POST /v1/events`. */
export type Outcome =
  | { index: number; event_id: string; status: "accepted" | "duplicate"; seq: number; reason?: "fingerprint"; message?: string }
  | { index: number; event_id?: string; status: "rejected"; reason: string; message: string; issues: Issue[]; dead_letter_seq?: number; dead_letter?: "failed" }
  | { index: number; event_id?: string; status: "failed"; message: string };

const enc = new TextEncoder();
/** Events validated between two yields to the event loop. */
const YIELD_EVERY = 16;

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/**
 * `POST /v1/events`: one event, an array, or `{ "events": [...] }`. Each
 * event is validated and published with `Nats-Msg-Id = <tenant>:<user>:<event_id>`; the
 * answer gives each event's outcome. Rejected events go to the DLQ.
 *
 * A tenant key may send only its own tenant's events: one event of another
 * tenant makes the whole request a 403, and nothing is published. The
 * tenant's event quota is taken for the whole request or not at all (429
 * with `Retry-After`, nothing published).
 */
export function eventRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { config } = ctx;
  const quotas = new TenantQuotas(config.http.quota.eventsPerSecond, config.http.quota.burst);
  const outcome = {
    type: "object",
    required: ["index", "status"],
    properties: {
      index: { type: "integer", description: "position in the request" },
      event_id: { type: "string" },
      status: { enum: ["accepted", "duplicate", "rejected", "failed"] },
      seq: { type: "integer", description: "stream sequence (accepted and duplicate)" },
      reason: { type: "string", description: "rejection code (invalid_event, too_large, …), or fingerprint for a duplicate" },
      message: { type: "string" },
      issues: { type: "array", items: { type: "object", properties: { path: { type: "string" }, message: { type: "string" } } } },
      dead_letter_seq: { type: "integer", description: "where a rejected event is kept in ACH_DLQ" },
      dead_letter: { const: "failed", description: "the DLQ could not take a rejected event (logged)" },
    },
  };
  const schema: FastifySchema = {
    summary: `Ingest one event, an array of up to ${config.http.maxBatch}, or {"events": [...]}`,
    description:
      "Each event is validated, then published to ach.events.<tenant>.<user>.<event_type> with Nats-Msg-Id = <tenant>:<user>:<event_id>, and its PubAck awaited. Rejected events are kept in the DLQ. A tenant key sends only its own tenant's events.",
    tags: ["events"],
    body: { oneOf: [EventJson, { type: "array", items: EventJson }, { type: "object", properties: { events: { type: "array", items: EventJson } } }] },
    response: {
      200: { description: "the outcome of each event", type: "object", properties: { results: { type: "array", items: outcome }, accepted: { type: "integer" }, duplicates: { type: "integer" }, rejected: { type: "integer" }, failed: { type: "integer" } } },
      403: { description: "an event of another tenant than the key's (nothing published)", ...ErrorJson },
      422: { description: "the one event sent was rejected (and kept in the DLQ)", ...outcome },
    },
  };
  app.post("/v1/events", { config: { access: { scope: Scopes.EventsWrite } }, schema }, async (req, reply) => {
    const body = req.body as unknown;
    const single = !Array.isArray(body) && !(body && typeof body === "object" && Array.isArray((body as { events?: unknown }).events));
    const events: unknown[] = Array.isArray(body) ? body : single ? [body] : (body as { events: unknown[] }).events;
    if (body === undefined || body === null || (single && typeof body !== "object")) {
      return reply.code(400).send({ error: "bad_request", message: "the body must be a JSON event, an array of events, or {\"events\": [...]}" });
    }
    if (events.length === 0) return reply.code(400).send({ error: "bad_request", message: "no events in the request" });
    if (events.length > config.http.maxBatch) {
      return reply.code(400).send({ error: "batch_too_large", message: `${events.length} events in one request; the limit is ${config.http.maxBatch} (http.maxBatch)` });
    }
    const principal = req.principal!;
    const counts = new Map<string, number>();
    for (const [i, e] of events.entries()) {
      const t = e && typeof e === "object" ? str((e as Record<string, unknown>).tenant_id) : undefined;
      if (principal.tenant !== null && t !== undefined && !actsFor(principal, t)) {
        return reply.code(403).send({ error: "forbidden", message: `event ${i} is for tenant ${JSON.stringify(t.slice(0, 200))}; this key belongs to tenant ${principal.tenant} (nothing in this request was published)` });
      }
      // Events without a usable tenant count against the key's tenant (they still cost a dead letter).
      const q = t !== undefined && ID_TOKEN.test(t) ? t : (principal.tenant ?? "(unknown)");
      counts.set(q, (counts.get(q) ?? 0) + 1);
    }
    const quota = quotas.take(counts);
    if (!quota.ok) return tooMany(ctx.stats, "quota", reply, Math.min(quota.retryAfterSeconds, 3600), `tenant ${quota.tenant} is over its event quota (${config.http.quota.eventsPerSecond}/s, burst ${config.http.quota.burst}); nothing in this request was published`);
    // One event's trouble is its own outcome, never the whole request's: the others were published or not, and the answer says which.
    const pending: Promise<Outcome>[] = [];
    for (const [index, e] of events.entries()) {
      // Validation is synchronous work on the loop the workers share: yield every few events, so a large batch
      // never holds lease renewals, acks and other requests back for long.
      if (index > 0 && index % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
      pending.push(
        ingestOne(ctx, e, index).catch((err: unknown): Outcome => {
          ctx.log.error({ err, index }, "ingesting an event failed");
          return { index, status: "failed", message: `not published: ${(err as Error).message}` };
        }),
      );
    }
    const outcomes = await Promise.all(pending);
    const count = (s: Outcome["status"]) => outcomes.filter((o) => o.status === s).length;
    const summary = { results: outcomes, accepted: count("accepted"), duplicates: count("duplicate"), rejected: count("rejected"), failed: count("failed") };
    if (summary.failed > 0) return reply.code(503).send({ error: "unavailable", message: "NATS did not confirm some events; retry them (same event_id is safe)", ...summary });
    // The single event's outcome, with the error shape's two fields (its reason and message).
    if (single && outcomes[0]!.status === "rejected") return reply.code(422).send({ error: outcomes[0]!.reason, ...outcomes[0] });
    return reply.code(200).send(summary);
  });
}

async function ingestOne(ctx: ApiContext, raw: unknown, index: number): Promise<Outcome> {
  const rawObj = raw && typeof raw === "object" ? (raw as Record<string, unknown>) : {};
  const eventId = str(rawObj.event_id);
  const data = enc.encode(JSON.stringify(raw ?? null));
  // The horizon is checked against now, the moment it is published: the worker checks the stream's time, a moment later.
  const res = validateEvent(raw, { limits: ctx.config.limits, storedAt: Date.now() });
  let rejection = res.ok ? undefined : res.rejection;
  if (!rejection && data.length > ctx.config.events.maxBytes) {
    const message = `event is ${data.length} bytes, the limit is ${ctx.config.events.maxBytes}`;
    rejection = { code: RejectCodes.TooLarge, message: `(body): ${message}`, issues: [{ path: "(body)", message }] };
  }
  if (rejection || !res.ok) {
    const r = rejection!;
    const tenant = str(rawObj.tenant_id);
    const user = str(rawObj.user_id);
    const type = str(rawObj.event_type);
    const ok = (t?: string) => (t && ID_TOKEN.test(t) ? t : undefined);
    // The scoped msg id names the event in the DLQ even when its body is cut or unreadable.
    const h = headers();
    if (ok(tenant) && ok(user) && eventId && EVENT_ID.test(eventId)) h.set("Nats-Msg-Id", eventMsgId(tenant!, user!, eventId));
    const letter = {
      data,
      headers: h,
      subject: ok(tenant) && ok(user) && type && EVENT_TYPE.test(type) ? eventSubject(tenant!, user!, type) : "(http)",
      ...(ok(tenant) ? { tenant } : {}),
      ...(ok(user) ? { user } : {}),
      rejection: r,
      origin: "http" as const,
    };
    const kept = await keep(ctx, letter);
    ctx.log.info({ reason: r.code, tenant: letter.tenant, event_id: eventId?.slice(0, 128), dead_letter: kept ?? "failed" }, "rejected an event sent over HTTP");
    return {
      index,
      ...(eventId ? { event_id: eventId } : {}),
      status: "rejected",
      reason: r.code,
      message: r.message,
      issues: r.issues,
      ...(kept === undefined ? { dead_letter: "failed" as const } : { dead_letter_seq: kept }),
    };
  }
  const e = res.value.event;
  try {
    const subject = eventSubject(e.tenant_id, e.user_id, e.event_type);
    let ack = await ctx.js.publish(subject, data, { msgID: eventMsgId(e.tenant_id, e.user_id, e.event_id) });
    if (ack.duplicate) {
      if (await storedFor(ctx, ack.seq, e)) {
        ctx.stats.tenant(e.tenant_id).windowDuplicates++;
        return { index, event_id: e.event_id, status: "duplicate", seq: ack.seq };
      }
      // The id was taken by another message (someone set our msg id on another event; the worker dead-letters
      // theirs). Store ours without the window's help: the engine's own event-id record still
      // counts it once.
      ack = await ctx.js.publish(subject, data);
    }
    const seenAt = await fingerprintSeen(ctx, res.value);
    if (seenAt !== undefined) {
      // Stored (the raw log keeps every report), but it will not count: the same action was reported already.
      const message = `the same ${e.event_type} was already reported for ${new Date(seenAt).toISOString()} (business fingerprint); it is kept but does not count`;
      return { index, event_id: e.event_id, status: "duplicate", reason: "fingerprint", message, seq: ack.seq };
    }
    return { index, event_id: e.event_id, status: "accepted", seq: ack.seq };
  } catch (err) {
    return { index, event_id: e.event_id, status: "failed", message: (err as Error).message };
  }
}

/**
 * Writes a rejected event to the DLQ, trying three times; on failure logs
 * it loudly, counts it (`dead_letter_failures` in `/v1/status` and
 * `/v1/stats`) and returns
 * undefined, so the answer can say the event was not kept.
 */
async function keep(ctx: ApiContext, letter: DeadLetter): Promise<number | undefined> {
  let last: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await ctx.dlq.send(letter);
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
  ctx.stats.deadLetterFailures++;
  ctx.log.error({ err: last, reason: letter.rejection.code, tenant: letter.tenant }, "could not keep a rejected event in the DLQ; the client is told so");
  return undefined;
}

/**
 * Whether the message stored at `seq` (the original of a duplicate answer)
 * is this event: on the same user's subject, with the same event id. The
 * duplicate window is stream-wide and a producer chooses its msg id freely,
 * so a duplicate answer is only trusted when the original is a copy of the
 * same event — not another user's message, nor a message of the same user
 * that borrowed this event's msg id for another event (the worker
 * dead-letters that one as `msg_id_mismatch`).
 */
async function storedFor(ctx: ApiContext, seq: number, e: { tenant_id: string; user_id: string; event_id: string }): Promise<boolean> {
  const m = await ctx.jsm.streams.getMessage(Streams.Events, { seq }).catch(() => null);
  // Gone (aged out, purged) or unreadable: the window still had it, so it was ours to judge; trust the answer.
  if (!m) return true;
  const where = parsePartitionedSubject(m.subject);
  if (where?.tenant !== e.tenant_id || where.user !== e.user_id) return false;
  try {
    return (JSON.parse(m.string()) as { event_id?: unknown }).event_id === e.event_id;
  } catch {
    return false;
  }
}

/**
 * When the event's business fingerprint is already in its user's state
 * within the window, the time of the earlier report. Best effort at
 * ingest (the worker may not have applied the earlier report yet); the
 * worker decides either way.
 */
async function fingerprintSeen(ctx: ApiContext, ev: ValidEvent): Promise<number | undefined> {
  const fp = fingerprintOf(ev, ctx.config.dedup.fingerprints);
  if (!fp) return undefined;
  const { state } = await ctx.state.read(userKey(ev.event.tenant_id, ev.event.user_id));
  return fingerprintMatch(fp, state.fp, ev.occurredAt);
}

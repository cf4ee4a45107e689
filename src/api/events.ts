import type { FastifyInstance } from "fastify";
import { eventSubject, ID_TOKEN, RejectCodes, validateEvent, type Issue, type ValidEvent } from "../events/mod.ts";
import { fingerprintMatch, fingerprintOf } from "../pipeline/mod.ts";
import { userKey } from "../state/mod.ts";
import type { ApiContext } from "./context.ts";

/** The outcome of one event of a `POST /v1/events`. */
export type Outcome =
  | { index: number; event_id: string; status: "accepted" | "duplicate"; seq: number; reason?: "fingerprint"; message?: string }
  | { index: number; event_id?: string; status: "rejected"; reason: string; message: string; issues: Issue[] }
  | { index: number; event_id: string; status: "failed"; message: string };

const enc = new TextEncoder();

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/**
 * `POST /v1/events`: one event, an array, or `{ "events": [...] }`. Each
 * event is validated and published with `Nats-Msg-Id = event_id`; the
 * answer gives each event's outcome. Rejected events go to the DLQ.
 */
export function eventRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { config } = ctx;
  app.post("/v1/events", async (req, reply) => {
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
    const outcomes = await Promise.all(events.map((e, index) => ingestOne(ctx, e, index)));
    const count = (s: Outcome["status"]) => outcomes.filter((o) => o.status === s).length;
    const summary = { results: outcomes, accepted: count("accepted"), duplicates: count("duplicate"), rejected: count("rejected"), failed: count("failed") };
    if (summary.failed > 0) return reply.code(503).send({ error: "unavailable", message: "NATS did not confirm some events; retry them (same event_id is safe)", ...summary });
    if (single && outcomes[0]!.status === "rejected") return reply.code(422).send(outcomes[0]);
    return reply.code(200).send(summary);
  });
}

async function ingestOne(ctx: ApiContext, raw: unknown, index: number): Promise<Outcome> {
  const rawObj = raw && typeof raw === "object" ? (raw as Record<string, unknown>) : {};
  const eventId = str(rawObj.event_id);
  const data = enc.encode(JSON.stringify(raw ?? null));
  const res = validateEvent(raw);
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
    await ctx.dlq
      .send({
        data,
        subject: ok(tenant) && ok(user) && type ? eventSubject(tenant!, user!, type) : "(http)",
        ...(ok(tenant) ? { tenant } : {}),
        ...(ok(user) ? { user } : {}),
        rejection: r,
        origin: "http",
      })
      .catch(() => undefined);
    return { index, ...(eventId ? { event_id: eventId } : {}), status: "rejected", reason: r.code, message: r.message, issues: r.issues };
  }
  const e = res.value.event;
  try {
    const ack = await ctx.js.publish(eventSubject(e.tenant_id, e.user_id, e.event_type), data, { msgID: e.event_id });
    if (ack.duplicate) return { index, event_id: e.event_id, status: "duplicate", seq: ack.seq };
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

import { z } from "zod";
import { EventSchema } from "../events/mod.ts";

/** The OpenAPI 3.1 document of the HTTP API (served at `/openapi.json`). */
export function openApiDocument(maxBatch: number): Record<string, unknown> {
  const event = z.toJSONSchema(EventSchema, { io: "input" });
  const outcome = {
    type: "object",
    required: ["index", "status"],
    properties: {
      index: { type: "integer", description: "position in the request" },
      event_id: { type: "string" },
      status: { enum: ["accepted", "duplicate", "rejected", "failed"] },
      seq: { type: "integer", description: "stream sequence (accepted and duplicate)" },
      reason: { type: "string", description: "rejection code: invalid_event, too_large, …" },
      message: { type: "string" },
      issues: { type: "array", items: { type: "object", properties: { path: { type: "string" }, message: { type: "string" } } } },
    },
  };
  const error = { type: "object", required: ["error", "message"], properties: { error: { type: "string" }, message: { type: "string" } } };
  const json = (schema: unknown) => ({ content: { "application/json": { schema } } });
  const userParams = [
    { name: "tenant", in: "path", required: true, schema: { type: "string" } },
    { name: "user", in: "path", required: true, schema: { type: "string" } },
  ];
  return {
    openapi: "3.1.0",
    info: { title: "achd — achievement engine API", version: "1" },
    paths: {
      "/v1/events": {
        post: {
          summary: `Ingest one event, an array of up to ${maxBatch} events, or {"events": [...]}`,
          description:
            "Each event is validated, then published to ach.events.<tenant>.<user>.<event_type> with Nats-Msg-Id = event_id, and the PubAck is awaited. Rejected events are kept in the DLQ.",
          requestBody: json({ oneOf: [event, { type: "array", items: event }, { type: "object", properties: { events: { type: "array", items: event } } }] }),
          responses: {
            "200": { description: "Per-event outcome", ...json({ type: "object", properties: { results: { type: "array", items: outcome }, accepted: { type: "integer" }, duplicates: { type: "integer" }, rejected: { type: "integer" } } }) },
            "400": { description: "Malformed request", ...json(error) },
            "422": { description: "The single event sent was rejected", ...json(outcome) },
            "503": { description: "NATS unavailable; some events were not published", ...json(error) },
          },
        },
      },
      "/v1/tenants/{tenant}/users/{user}/achievements": {
        get: {
          summary: "Unlocked achievements and progress of one user",
          parameters: userParams,
          responses: {
            "200": {
              description: "Unlocked (with unlocked_at and rule_version) and in-progress (current and target) achievements; hidden ones appear only once unlocked",
              ...json({ type: "object", properties: { tenant_id: { type: "string" }, user_id: { type: "string" }, unlocked: { type: "array" }, in_progress: { type: "array" } } }),
            },
            "400": { description: "Bad tenant or user id", ...json(error) },
          },
        },
      },
      "/v1/dlq": {
        get: {
          summary: "Dead letters, oldest first",
          parameters: [
            { name: "tenant", in: "query", schema: { type: "string" } },
            { name: "limit", in: "query", schema: { type: "integer", minimum: 1, maximum: 1000, default: 100 } },
            { name: "from", in: "query", schema: { type: "integer", minimum: 1 }, description: "first DLQ sequence" },
          ],
          responses: { "200": { description: "{ dead_letters: [...] } with seq, subject, reason, error, origin, failed_at, delivery_count, event_id" } },
        },
      },
      "/v1/dlq/{seq}": {
        get: { summary: "One dead letter with its body and headers", parameters: [{ name: "seq", in: "path", required: true, schema: { type: "integer" } }], responses: { "200": { description: "the dead letter" }, "404": { description: "no such dead letter", ...json(error) } } },
      },
      "/v1/dlq/{seq}/redrive": {
        post: {
          summary: "Publish a dead letter again on its original subject and remove it from the DLQ",
          parameters: [{ name: "seq", in: "path", required: true, schema: { type: "integer" } }],
          responses: { "200": { description: "{ seq, subject, stream_seq, duplicate }" }, "404": { description: "no such dead letter", ...json(error) } },
        },
      },
      "/v1/stats": { get: { summary: "Counters of this process's workers", responses: { "200": { description: "Counters" } } } },
      "/healthz": { get: { summary: "The process is alive", responses: { "200": { description: "ok" } } } },
      "/readyz": { get: { summary: "NATS connected, streams and consumers present", responses: { "200": { description: "ready" }, "503": { description: "not ready" } } } },
    },
    components: { schemas: { Event: event } },
  };
}

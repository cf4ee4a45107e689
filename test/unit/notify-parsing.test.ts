import { describe, expect, it } from "vitest";
import { pageQuery, positiveInt } from "../../src/api/query.ts";
import { unlockOf } from "../../src/core/mod.ts";
import { logEntry } from "../../src/notify/webhooks/journal.ts";
import { parseWebhookConsumer, webhookConsumerConfig } from "../../src/notify/webhooks/record.ts";

describe("the one check of an unlock body", () => {
  const unlock = { unlock_id: "ul_1", tenant_id: "acme", user_id: "u1", achievement_id: "first-lesson" };
  it("takes a JSON object with an unlock id, a user and an achievement", () => {
    expect(unlockOf(JSON.stringify(unlock))).toEqual(unlock);
    expect(unlockOf(JSON.stringify({ ...unlock, backfill: true }))?.backfill).toBe(true);
  });
  it("refuses anything else: not JSON, null, an array, a number, an object short of a field or with one of the wrong type", () => {
    for (const body of ["", "{", "null", "[]", "42", '"ul_1"', "{}", JSON.stringify({ ...unlock, unlock_id: 7 }), JSON.stringify({ unlock_id: "ul_1", user_id: "u1" }), JSON.stringify([unlock])]) {
      expect(unlockOf(body), body).toBeUndefined();
    }
  });
});

describe("numbers in queries and paths", () => {
  it("takes decimal digits from 1 to the bound only", () => {
    expect(positiveInt("1")).toBe(1);
    expect(positiveInt("1000", 1000)).toBe(1000);
    for (const raw of ["0", "-1", "1001", "1e3", " 5", "5.0", "0x10", "", "x"]) expect(positiveInt(raw, 1000), raw).toBeUndefined();
  });
  it("reads a page (limit with its default and bound, from) or names what is wrong", () => {
    expect(pageQuery({}, 1000)).toEqual({ limit: 100 });
    expect(pageQuery({ limit: "7", from: "42" }, 1000)).toEqual({ limit: 7, from: 42 });
    expect(pageQuery({}, 100, 100)).toEqual({ limit: 100 });
    expect(pageQuery({ limit: "1001" }, 1000)).toEqual({ error: "limit must be an integer from 1 to 1000" });
    expect(pageQuery({ limit: "0" }, 100)).toEqual({ error: "limit must be an integer from 1 to 100" });
    expect(pageQuery({ from: "x" }, 1000)).toEqual({ error: "from must be a positive integer" });
  });
});

describe("webhook records", () => {
  it("reads a webhook consumer's id and tenant back from what its config wrote", () => {
    const cfg = webhookConsumerConfig({ id: "wh_0123456789abcdef", tenant: "acme", created_at: "2026-04-13T10:00:00Z" }, 30_000);
    expect(parseWebhookConsumer(cfg.durable_name, cfg.description)).toEqual({ id: "wh_0123456789abcdef", tenant: "acme" });
    expect(parseWebhookConsumer("wh_0123456789abcdef", "changed by hand")).toEqual({ id: "wh_0123456789abcdef" });
    expect(parseWebhookConsumer("wh_0123456789abcdef")).toEqual({ id: "wh_0123456789abcdef" });
    expect(parseWebhookConsumer("p-3", "achd webhook p-3 of acme")).toBeUndefined();
  });
  it("writes one delivery-log entry for an attempt, keeping the start of a failed answer only", () => {
    const unlock = { unlock_id: "ul_1", user_id: "u1", achievement_id: "first-lesson" };
    const ok = logEntry(unlock, 1, "delivered", { outcome: "ok", status: 200, latencyMs: 12, response: "fine" });
    expect(ok).toEqual({ at: expect.any(String), ...unlock, attempt: 1, outcome: "delivered", status: 200, latency_ms: 12 });
    const failed = logEntry(unlock, 3, "retrying", { outcome: "retry", status: 503, latencyMs: 5, error: "status 503", response: "x".repeat(1000) });
    expect(failed).toMatchObject({ attempt: 3, outcome: "retrying", status: 503, error: "status 503" });
    expect(failed.response).toHaveLength(256);
    expect(logEntry(unlock, 2, "dead_letter", { outcome: "fail", latencyMs: 0, error: "refused" }).status).toBeNull();
  });
});

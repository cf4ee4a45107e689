import { describe, expect, it } from "vitest";
import { validateEvent, type EventInput, type ValidEvent } from "../../src/events/mod.ts";
import { applyEvents, emptyUserState, fingerprintOf, type FingerprintSpec } from "../../src/core/mod.ts";
import { compileRuleSet, RuleSchema } from "../../src/rules/mod.ts";

const specs: FingerprintSpec[] = [{ event: ["purchase.placed"], fields: ["payload.order_id"], within: 10 * 60_000 }];
const rules = compileRuleSet([RuleSchema.parse({ id: "buyer", type: "count", event: "purchase.placed", target: 2 })]);

function ev(id: string, at: string, payload: Record<string, unknown>, extra: Partial<EventInput> = {}): ValidEvent {
  const r = validateEvent({ event_id: id, event_type: "purchase.placed", tenant_id: "t", user_id: "u", occurred_at: at, payload, ...extra });
  if (!r.ok) throw new Error(r.rejection.message);
  return r.value;
}

describe("business fingerprint dedup", () => {
  it("collapses the same purchase reported by the app, a webhook and a batch import", () => {
    const items = [
      ev("app-1", "2026-04-13T10:00:00Z", { order_id: "o-1" }, { source: "mobile-app" }),
      ev("hook-77", "2026-04-13T10:00:04Z", { order_id: "o-1", amount: 10 }, { source: "webhook" }),
      ev("import-9", "2026-04-13T10:05:00Z", { order_id: "o-1" }, { source: "batch" }),
    ].map((e, i) => ({ seq: i + 1, ev: e }));
    const r = applyEvents(emptyUserState(), items, rules, 64, "all", specs);
    expect(r.fingerprinted).toBe(2);
    expect(r.applied).toBe(1);
    expect(r.unlocks).toEqual([]);
  });

  it("counts the same order again outside the window, and other orders always", () => {
    const items = [
      ev("a", "2026-04-13T10:00:00Z", { order_id: "o-1" }),
      ev("b", "2026-04-13T10:30:00Z", { order_id: "o-1" }),
      ev("c", "2026-04-13T10:31:00Z", { order_id: "o-2" }),
    ].map((e, i) => ({ seq: i + 1, ev: e }));
    const r = applyEvents(emptyUserState(), items, rules, 64, "all", specs);
    expect(r.fingerprinted).toBe(0);
    expect(r.unlocks.map((u) => u.achievement_id)).toEqual(["buyer"]);
  });

  it("a late copy inside the window collapses too, whichever came first", () => {
    const later = { seq: 1, ev: ev("late-first", "2026-04-13T10:09:00Z", { order_id: "o-1" }) };
    const earlier = { seq: 2, ev: ev("early-second", "2026-04-13T10:00:00Z", { order_id: "o-1" }) };
    expect(applyEvents(emptyUserState(), [later, earlier], rules, 64, "all", specs).fingerprinted).toBe(1);
  });

  it("has no fingerprint when a field is missing, or for types no spec covers", () => {
    expect(fingerprintOf(ev("x", "2026-04-13T10:00:00Z", {}), specs)).toBeUndefined();
    const other = validateEvent({ event_id: "y", event_type: "lesson.completed", tenant_id: "t", user_id: "u", occurred_at: "2026-04-13T10:00:00Z", payload: { order_id: "o-1" } });
    expect(other.ok && fingerprintOf(other.value, specs)).toBeUndefined();
    // With `round`, the rounded business time is part of the fingerprint.
    const rounded: FingerprintSpec[] = [{ ...specs[0]!, round: 60_000 }];
    const a = fingerprintOf(ev("a", "2026-04-13T10:00:10Z", { order_id: "o-1" }), rounded);
    const b = fingerprintOf(ev("b", "2026-04-13T10:00:50Z", { order_id: "o-1" }), rounded);
    const c = fingerprintOf(ev("c", "2026-04-13T10:01:10Z", { order_id: "o-1" }), rounded);
    expect(a?.key).toBe(b?.key);
    expect(c?.key).not.toBe(a?.key);
  });
});

import { describe, expect, it } from "vitest";
import { wants } from "../../src/notify/webhooks/record.ts";

describe("which unlocks a webhook gets", () => {
  const live = { achievement_id: "five-lessons" };
  const backfilled = { achievement_id: "five-lessons", backfill: true };
  it("gets every live unlock without a filter, and only the named achievements with one", () => {
    expect(wants({}, live)).toBe(true);
    expect(wants({ achievements: ["five-lessons"] }, live)).toBe(true);
    expect(wants({ achievements: ["first-lesson"] }, live)).toBe(false);
  });
  it("leaves backfilled unlocks quiet unless the webhook asked for them", () => {
    expect(wants({}, backfilled)).toBe(false);
    expect(wants({ backfill: false }, backfilled)).toBe(false);
    expect(wants({ backfill: true }, backfilled)).toBe(true);
    expect(wants({ backfill: true, achievements: ["first-lesson"] }, backfilled)).toBe(false);
  });
});

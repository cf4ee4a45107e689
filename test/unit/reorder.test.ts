import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { SeqEvent } from "../../src/core/mod.ts";
import { ReorderBuffer } from "../../src/pipeline/reorder.ts";

const W = 2000;
const T0 = Date.parse("2026-04-13T10:00:00Z");
let seq = 0;
function item(user: string, minutes: number): SeqEvent {
  seq++;
  return { seq, ev: { occurredAt: T0 + minutes * 60_000, event: { event_id: `${user}-${seq}`, event_type: "x", tenant_id: "t", user_id: user, occurred_at: "", payload: {} } } };
}
const times = (m: Map<string, SeqEvent[]>, user: string) => (m.get(user) ?? []).map((i) => (i.ev.occurredAt - T0) / 60_000);

describe("reorder window", () => {
  it("puts three steps back in order when they arrive in reverse, one at a time, inside the window, however far apart their event times are", () => {
    const b = new ReorderBuffer({ window: W, maxPerUser: 500, maxPerPartition: 5000 });
    const released: number[] = [];
    // Step 3 (an hour later in event time) first, then step 2, then step 1, 250 ms apart, each in its own batch.
    for (const [at, minutes] of [
      [0, 120],
      [250, 60],
      [500, 0],
    ] as const) {
      expect(b.add("u", item("u", minutes), at)).toBe("buffered");
      released.push(...times(b.due(at), "u"));
    }
    expect(released).toEqual([]);
    // Released once the last of them has waited the window, in event-time order.
    expect(times(b.due(2499), "u")).toEqual([]);
    released.push(...times(b.due(2500), "u"));
    expect(released).toEqual([0, 60, 120]);
  });

  it("calls an event late only when a later event of its user was released before it arrived", () => {
    const b = new ReorderBuffer({ window: W, maxPerUser: 500, maxPerPartition: 5000 });
    b.add("u", item("u", 10), 0);
    expect(times(b.due(W), "u")).toEqual([10]);
    expect(b.add("u", item("u", 5), W + 1)).toBe("late");
    // Another user is not affected.
    expect(b.add("v", item("v", 5), W + 1)).toBe("buffered");
  });

  it("releases the same order whatever the pace of arrivals within the window (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: W - 1 })), { minLength: 1, maxLength: 12 }), (evs) => {
        // Each event: an event time (minutes) and an arrival offset inside the window; arrivals sorted.
        const b = new ReorderBuffer({ window: W, maxPerUser: 500, maxPerPartition: 5000 });
        const arrivals = evs.map(([m, at]) => ({ m, at })).sort((x, y) => x.at - y.at);
        const out: number[] = [];
        for (const a of arrivals) {
          expect(b.add("u", item("u", a.m), a.at)).toBe("buffered");
          out.push(...times(b.due(a.at), "u"));
        }
        out.push(...times(b.due(10 * W), "u"));
        expect(out).toEqual(arrivals.map((a) => a.m).sort((x, y) => x - y));
      }),
      { numRuns: 300 },
    );
  });

  it("bounds what it holds per user and per partition, releasing the oldest early", () => {
    const b = new ReorderBuffer({ window: W, maxPerUser: 2, maxPerPartition: 3 });
    b.add("u", item("u", 3), 0);
    b.add("u", item("u", 1), 0);
    b.add("u", item("u", 2), 0);
    expect(times(b.due(1), "u")).toEqual([1]);
    b.add("v", item("v", 0), 1);
    b.add("w", item("w", 0), 1);
    const r = b.due(2);
    expect(b.size).toBeLessThanOrEqual(3);
    expect([...r.values()].flat().length).toBe(1);
  });
});

describe("reorder window wake-ups", () => {
  it("wakes when the first event that can be released is due, not for one waiting behind it", () => {
    const b = new ReorderBuffer({ window: W, maxPerUser: 500, maxPerPartition: 5000 });
    b.add("u", item("u", 10), 0);
    b.add("u", item("u", 5), 1500);
    // The event of minute 10 arrived first, but waits behind minute 5, due at 3500.
    expect(b.nextDue(2000)).toBe(1500);
    expect(times(b.due(2000), "u")).toEqual([]);
    expect(times(b.due(3500), "u")).toEqual([5, 10]);
    expect(b.nextDue(3500)).toBeUndefined();
  });
});

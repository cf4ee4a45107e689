import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { plannedPartitions } from "../../src/cluster/mod.ts";

const ids = fc.uniqueArray(fc.stringMatching(/^[a-z0-9-]{1,12}$/), { minLength: 1, maxLength: 12 });

describe("the coordinator's partition plan", () => {
  it("gives every partition to exactly one live worker, balanced to within one, whoever computes it", () => {
    fc.assert(
      fc.property(ids, fc.integer({ min: 1, max: 64 }), (workers, P) => {
        const live = [...workers].sort();
        const plans = live.map((w) => plannedPartitions(w, live, P));
        const all = plans.flat().sort((a, b) => a - b);
        expect(all).toEqual(Array.from({ length: P }, (_, k) => k));
        const sizes = plans.map((p) => p.length);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 300 },
    );
  });

  it("plans a worker not yet seen live as if it were (its share once the others see it)", () => {
    fc.assert(
      fc.property(ids, fc.stringMatching(/^[a-z0-9-]{1,12}$/), fc.integer({ min: 1, max: 64 }), (others, me, P) => {
        fc.pre(!others.includes(me));
        const live = [...others].sort();
        const joined = [...others, me].sort();
        expect(plannedPartitions(me, live, P)).toEqual(plannedPartitions(me, joined, P));
      }),
      { numRuns: 300 },
    );
  });

  it("moves only what it must when a worker joins: k mod W decides, so P=6 over a,b then a,b,c", () => {
    expect(plannedPartitions("a", ["a", "b"], 6)).toEqual([0, 2, 4]);
    expect(plannedPartitions("b", ["a", "b"], 6)).toEqual([1, 3, 5]);
    expect(["a", "b", "c"].map((w) => plannedPartitions(w, ["a", "b", "c"], 6))).toEqual([
      [0, 3],
      [1, 4],
      [2, 5],
    ]);
  });
});

import { describe, expect, it } from "vitest";
import { decodeState, emptyUserState, encodeState, type UserState } from "../../src/core/mod.ts";

describe("user state encoding", () => {
  it("writes the same state as the same bytes, whatever order its fields and maps were filled in", () => {
    const base = emptyUserState();
    const a: UserState = { ...base, seq: 5, fp: { b: 2, a: 1 }, ot: [10, 3], oids: ["x"], eval: { rules: { z: { k: "count" }, a: { k: "count" } }, unlocked: {} } };
    const b: UserState = { v: 1, outbox: [], eval: { unlocked: {}, rules: { a: { k: "count" }, z: { k: "count" } } }, oids: ["x"], ot: [10, 3], fp: { a: 1, b: 2 }, ids: [], seq: 5 };
    expect(new TextDecoder().decode(encodeState(b))).toBe(new TextDecoder().decode(encodeState(a)));
    expect(decodeState(encodeState(a))).toEqual(a);
  });
});

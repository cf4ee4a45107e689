import { describe, expect, it } from "vitest";
import { ConfigSchema } from "../../src/config/mod.ts";
import {
  decodeMessage,
  DEFAULT_EVENT_LIMITS,
  eventMsgId,
  MAX_RULE_NUMBER,
  partitionOf,
  RejectCodes,
  ruleValue,
  validateEvent,
  type DecodeResult,
  type Rejection,
} from "../../src/events/mod.ts";
import { checkShape } from "../../src/util/json.ts";

const P = 8;
const enc = new TextEncoder();
const STORED = Date.parse("2026-11-30T12:00:00Z");
const DAY = 86_400_000;

function body(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { event_id: "evt-1", event_type: "lesson.completed", tenant_id: "acme", user_id: "u1", occurred_at: "2026-11-30T10:00:00Z", ...overrides };
}

function subjectOf(b: Record<string, unknown>): string {
  return `ach.p.${partitionOf(String(b.tenant_id), String(b.user_id), P)}.${String(b.tenant_id)}.${String(b.user_id)}.${String(b.event_type)}`;
}

/** The same body over NATS (bytes, as stored) with its stream time. */
function overNats(text: string, storedAt = STORED, limits = {}): DecodeResult {
  const b = JSON.parse(text) as Record<string, unknown>;
  return decodeMessage(subjectOf(b), enc.encode(text), eventMsgId(String(b.tenant_id), String(b.user_id), String(b.event_id)), { maxBytes: 1 << 20, partitions: P, limits, storedAt });
}

/** The same body over HTTP: parsed (keeping `__proto__` as an own key, as a protoAction of "ignore" does), validated at publishing time. */
function overHttp(text: string, storedAt = STORED, limits = {}): DecodeResult {
  return validateEvent(JSON.parse(text), { limits, storedAt });
}

function rejection(r: DecodeResult): Rejection {
  if (r.ok) throw new Error(`expected a rejection, got ${JSON.stringify(r.value.event)}`);
  return r.rejection;
}

/** Both doors give the same answer: same code, same issues. */
function bothReject(text: string, storedAt = STORED, limits = {}): Rejection {
  const nats = rejection(overNats(text, storedAt, limits));
  const http = rejection(overHttp(text, storedAt, limits));
  expect(http).toEqual(nats);
  return nats;
}

function nested(levels: number, leaf: unknown = 1): unknown {
  let v = leaf;
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
}

describe("checkShape", () => {
  it("counts levels from the value itself and stops at the first problem", () => {
    expect(checkShape({ a: { b: 1 } }, { maxDepth: 2, maxEntries: 10 })).toEqual({ kind: "ok", entries: 2 });
    expect(checkShape({ a: { b: {} } }, { maxDepth: 2, maxEntries: 10 })).toMatchObject({ kind: "depth", path: ["a", "b"] });
    expect(checkShape([1, [2, 3]], { maxDepth: 5, maxEntries: 3 })).toMatchObject({ kind: "entries" });
    expect(checkShape(JSON.parse('{"x":[{"__proto__":1}]}'), { maxDepth: 5, maxEntries: 10 })).toEqual({ kind: "proto", path: ["x", 0, "__proto__"] });
  });

  it("walks 100,000 levels without overflowing the stack", () => {
    const deep = JSON.parse(`${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    expect(checkShape(deep, { maxDepth: 16, maxEntries: 1e6 })).toMatchObject({ kind: "depth" });
  });
});

describe("event limits, identically over NATS and HTTP", () => {
  it("refuses a payload nested deeper than limits.maxDepth, naming the path and the limit", () => {
    const ok = JSON.stringify(body({ payload: nested(DEFAULT_EVENT_LIMITS.maxDepth) }));
    expect(overNats(ok).ok).toBe(true);
    expect(overHttp(ok).ok).toBe(true);
    const r = bothReject(JSON.stringify(body({ payload: nested(DEFAULT_EVENT_LIMITS.maxDepth + 1) })));
    expect(r.code).toBe(RejectCodes.TooComplex);
    expect(r.issues[0]!.path).toMatch(/^payload\.a\.a/);
    expect(r.message).toContain("limits.maxDepth (16");
  });

  it("refuses a payload nested 10,000 levels with a clear reason, not a stack overflow", () => {
    const text = `{"event_id":"e1","event_type":"a.b","tenant_id":"t","user_id":"u","occurred_at":"2026-11-30T10:00:00Z","payload":${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}}`;
    const r = bothReject(text);
    expect(r.code).toBe(RejectCodes.TooComplex);
    expect(r.message).toMatch(/payload\.a\.a.*nested deeper than limits\.maxDepth/);
  });

  it("counts attributes with the payload against limits.maxKeys", () => {
    const payload = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`k${i}`, i]));
    expect(overNats(JSON.stringify(body({ payload, attributes: { plan: "pro" } })), STORED, { maxKeys: 7 }).ok).toBe(true);
    const r = bothReject(JSON.stringify(body({ payload, attributes: { plan: "pro", region: "eu" } })), STORED, { maxKeys: 7 });
    expect(r.code).toBe(RejectCodes.TooComplex);
    expect(r.message).toContain("limits.maxKeys (7)");
  });

  it("refuses a __proto__ key anywhere with the same reason on both doors", () => {
    for (const text of [
      '{"event_id":"e1","event_type":"a.b","tenant_id":"t","user_id":"u","occurred_at":"2026-11-30T10:00:00Z","payload":{"__proto__":{"amount":5}}}',
      '{"event_id":"e1","event_type":"a.b","tenant_id":"t","user_id":"u","occurred_at":"2026-11-30T10:00:00Z","payload":{"items":[{"__proto__":1}]}}',
      '{"event_id":"e1","event_type":"a.b","tenant_id":"t","user_id":"u","occurred_at":"2026-11-30T10:00:00Z","attributes":{"__proto__":"x"}}',
      '{"__proto__":{},"event_id":"e1","event_type":"a.b","tenant_id":"t","user_id":"u","occurred_at":"2026-11-30T10:00:00Z"}',
    ]) {
      const r = bothReject(text);
      expect(r.code).toBe(RejectCodes.InvalidEvent);
      expect(r.issues[0]!.path).toMatch(/__proto__$/);
      expect(r.message).toContain("a key named __proto__ is not allowed");
    }
  });

  it("keeps other prototype names as ordinary keys", () => {
    const r = overNats('{"event_id":"e1","event_type":"a.b","tenant_id":"t","user_id":"u","occurred_at":"2026-11-30T10:00:00Z","payload":{"constructor":7,"toString":"x"}}');
    if (!r.ok) throw new Error(r.rejection.message);
    expect(ruleValue(r.value.event, "payload.constructor")).toBe(7);
    expect(ruleValue(r.value.event, "payload.valueOf")).toBeUndefined();
  });
});

describe("the occurred_at horizon", () => {
  it("accepts up to limits.futureSkew after the stream time, and refuses beyond with future_event", () => {
    const at = (ms: number) => JSON.stringify(body({ occurred_at: new Date(ms).toISOString() }));
    expect(overNats(at(STORED + DAY)).ok).toBe(true);
    const r = bothReject(at(STORED + DAY + 1));
    expect(r.code).toBe(RejectCodes.FutureEvent);
    expect(r.issues).toHaveLength(1);
    expect(r.issues[0]!.path).toBe("occurred_at");
    expect(r.message).toContain("limits.futureSkew (1d)");
    expect(r.message).toContain("2026-12-01T12:00:00.000Z");
  });

  it("refuses 9999-12-31 (regression: it made every later sequence step late)", () => {
    const r = bothReject(JSON.stringify(body({ occurred_at: "9999-12-31T23:59:59Z" })));
    expect(r.code).toBe("future_event");
  });

  it("decides by the stored time, not the clock: the same bytes replayed later give the same answer", () => {
    const text = JSON.stringify(body({ occurred_at: "2026-12-05T00:00:00Z" }));
    expect(overNats(text, STORED).ok).toBe(false);
    expect(overNats(text, Date.parse("2026-12-04T00:00:00Z")).ok).toBe(true);
  });

  it("takes limits.futureSkew from the options", () => {
    const text = JSON.stringify(body({ occurred_at: "2026-12-05T00:00:00Z" }));
    expect(overNats(text, STORED, { futureSkew: 10 * DAY }).ok).toBe(true);
    expect(rejection(overNats(text, STORED, { futureSkew: 0 })).message).toContain("limits.futureSkew (0ms)");
  });

  it("accepts old events down to 1970, and refuses earlier ones as invalid", () => {
    expect(overNats(JSON.stringify(body({ occurred_at: "1970-01-01T00:00:00Z" }))).ok).toBe(true);
    const r = bothReject(JSON.stringify(body({ occurred_at: "1969-12-31T23:59:59Z" })));
    expect(r.code).toBe(RejectCodes.InvalidEvent);
    expect(r.message).toBe("occurred_at: must be 1970-01-01T00:00:00Z or later");
  });

  it("checks no horizon without a stored time (a tool with none)", () => {
    expect(validateEvent(body({ occurred_at: "9999-12-31T23:59:59Z" })).ok).toBe(true);
  });

  it("reports a wrong subject before the horizon", () => {
    const text = JSON.stringify(body({ occurred_at: "9999-12-31T23:59:59Z" }));
    const r = decodeMessage(`ach.p.${partitionOf("acme", "u1", P)}.acme.u1.other.type`, enc.encode(text), undefined, { maxBytes: 65_536, partitions: P, storedAt: STORED });
    expect(rejection(r).code).toBe(RejectCodes.SubjectMismatch);
  });
});

describe("messages that name the real problem", () => {
  it("says a 10,000-character event_type is too long (not 'must be a string')", () => {
    const r = rejection(validateEvent(body({ event_type: "a".repeat(10_000) })));
    expect(r.message).toBe("event_type: is too long: 10000 characters, at most 255");
  });

  it("keeps 'must be a string' for the wrong type, and length messages for other fields", () => {
    expect(rejection(validateEvent(body({ event_type: 5 }))).message).toBe("event_type: must be a string");
    expect(rejection(validateEvent(body({ user_id: "u".repeat(200) }))).message).toBe("user_id: is too long: 200 characters, at most 128");
    expect(rejection(validateEvent(body({ source: "s".repeat(129) }))).message).toBe("source: is too long: 129 characters, at most 128");
  });
});

describe("numbers rules read", () => {
  it("reads numbers beyond ±1e15 and non-finite ones as missing", () => {
    const r = overNats('{"event_id":"e1","event_type":"a.b","tenant_id":"t","user_id":"u","occurred_at":"2026-11-30T10:00:00Z","payload":{"a":1e15,"b":-1e15,"c":1000000000000001,"d":1e308,"e":-1e308,"f":1e400,"g":"1e400"}}');
    if (!r.ok) throw new Error(r.rejection.message);
    const e = r.value.event;
    expect([ruleValue(e, "payload.a"), ruleValue(e, "payload.b")]).toEqual([MAX_RULE_NUMBER, -MAX_RULE_NUMBER]);
    for (const k of ["c", "d", "e", "f"]) expect(ruleValue(e, `payload.${k}`)).toBeUndefined();
    expect(ruleValue(e, "payload.g")).toBe("1e400");
  });
});

describe("config limits", () => {
  it("defaults to the documented values", () => {
    expect(ConfigSchema.parse({}).limits).toEqual({ maxDepth: 16, maxKeys: 2000, futureSkew: DAY });
    expect(DEFAULT_EVENT_LIMITS).toEqual({ maxDepth: 16, maxKeys: 2000, futureSkew: DAY });
  });

  it("takes durations and refuses nonsense", () => {
    expect(ConfigSchema.parse({ limits: { futureSkew: "2h", maxDepth: 8 } }).limits).toEqual({ maxDepth: 8, maxKeys: 2000, futureSkew: 7_200_000 });
    expect(ConfigSchema.safeParse({ limits: { maxDepth: 0 } }).success).toBe(false);
    expect(ConfigSchema.safeParse({ limits: { other: 1 } }).success).toBe(false);
  });
});

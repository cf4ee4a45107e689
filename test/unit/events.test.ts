import { describe, expect, it } from "vitest";
import {
  decodeMessage,
  eventMsgId,
  parsePartitionedSubject,
  partitionOf,
  RejectCodes,
  validateEvent,
  type DecodeResult,
  type Rejection,
} from "../../src/events/mod.ts";

const enc = new TextEncoder();

/** Reference FNV-1a 32-bit, written independently of the source under test. */
function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5n;
  for (const b of bytes) h = ((h ^ BigInt(b)) * 0x01000193n) % 0x100000000n;
  return Number(h);
}

function body(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    event_id: "evt-1",
    event_type: "lesson.completed",
    tenant_id: "acme",
    user_id: "u1",
    occurred_at: "2026-04-13T10:12:45Z",
    ...overrides,
  };
}

const P = 8;
const OPTS = { maxBytes: 65536, partitions: P };
const SUBJECT = `ach.p.${partitionOf("acme", "u1", P)}.acme.u1.lesson.completed`;
const MSG_ID = "acme:u1:evt-1";

function bytes(v: unknown): Uint8Array {
  return enc.encode(JSON.stringify(v));
}

function rejected(r: DecodeResult): Rejection {
  if (r.ok) throw new Error(`expected a rejection, got ${JSON.stringify(r.value)}`);
  return r.rejection;
}

function accepted(r: DecodeResult) {
  if (!r.ok) throw new Error(`expected success, got ${JSON.stringify(r.rejection)}`);
  return r.value;
}

describe("partitionOf", () => {
  it("matches the known values", () => {
    expect(partitionOf("acme", "u1", 8)).toBe(5);
    expect(partitionOf("acme", "u2", 8)).toBe(4);
  });

  it("is FNV-1a 32-bit over tenant+user bytes, modulo P", () => {
    const cases: [string, string][] = [
      ["acme", "u1"],
      ["t", "user-42"],
      ["tenant_x", "Zz9"],
      ["ünï", "çødé"],
      ["", ""],
    ];
    for (const [t, u] of cases) {
      const h = fnv1a(enc.encode(t + u));
      for (const p of [1, 2, 7, 8, 64, 1024]) expect(partitionOf(t, u, p)).toBe(h % p);
    }
  });

  it("joins tenant and user without a separator", () => {
    expect(partitionOf("ac", "meu1", 1024)).toBe(partitionOf("acme", "u1", 1024));
  });

  it("always lands in [0, P)", () => {
    for (let i = 0; i < 500; i++) {
      const p = (i % 17) + 1;
      const k = partitionOf(`tenant${i % 7}`, `user${i}`, p);
      expect(Number.isInteger(k)).toBe(true);
      expect(k).toBeGreaterThanOrEqual(0);
      expect(k).toBeLessThan(p);
    }
  });

  it("spreads users over partitions", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add(partitionOf("acme", `u${i}`, 8));
    expect(seen.size).toBe(8);
  });
});

describe("parsePartitionedSubject", () => {
  it("parses partition, tenant, user and a multi-token event type", () => {
    expect(parsePartitionedSubject("ach.p.3.acme.u1.lesson.completed")).toEqual({
      partition: 3,
      tenant: "acme",
      user: "u1",
      eventType: "lesson.completed",
    });
  });

  it("keeps single-token and long event types", () => {
    expect(parsePartitionedSubject("ach.p.0.t.u.signup")).toEqual({ partition: 0, tenant: "t", user: "u", eventType: "signup" });
    expect(parsePartitionedSubject("ach.p.12.t.u.a.b.c.d")?.eventType).toBe("a.b.c.d");
  });

  it.each([
    "ach.p.3.acme.u1", // no event type
    "ach.events.acme.u1.lesson.completed", // not partitioned
    "foo.p.3.acme.u1.lesson.completed",
    "ach.q.3.acme.u1.lesson.completed",
    "ach.p.x.acme.u1.lesson.completed", // partition not a number
    "ach.p.-1.acme.u1.lesson.completed", // negative
    "ach.p.NaN.acme.u1.lesson.completed",
    "",
    "ach",
  ])("returns undefined for %j", (s) => {
    expect(parsePartitionedSubject(s)).toBeUndefined();
  });
});

describe("validateEvent", () => {
  it("accepts a valid event and parses occurred_at to epoch ms", () => {
    const v = accepted(validateEvent(body()));
    expect(v.occurredAt).toBe(Date.UTC(2026, 3, 13, 10, 12, 45));
    expect(v.event.event_id).toBe("evt-1");
    expect(v.event.tenant_id).toBe("acme");
  });

  it("defaults payload to {} and keeps a given payload", () => {
    expect(accepted(validateEvent(body())).event.payload).toEqual({});
    expect(accepted(validateEvent(body({ payload: { course_id: "c2", n: 3 } }))).event.payload).toEqual({ course_id: "c2", n: 3 });
  });

  it("honours the offset of occurred_at", () => {
    const v = accepted(validateEvent(body({ occurred_at: "2026-04-13T12:12:45+02:00" })));
    expect(v.occurredAt).toBe(Date.UTC(2026, 3, 13, 10, 12, 45));
    const ms = accepted(validateEvent(body({ occurred_at: "2026-04-13T10:12:45.250Z" })));
    expect(ms.occurredAt).toBe(Date.UTC(2026, 3, 13, 10, 12, 45, 250));
  });

  it.each(["yesterday", "2026-04-13", "2026-04-13T10:12:45", "2026-04-13 10:12:45Z", "1776075165000", ""])(
    "rejects occurred_at %j",
    (t) => {
      const r = rejected(validateEvent(body({ occurred_at: t })));
      expect(r.code).toBe("invalid_event");
      expect(r.issues.map((i) => i.path)).toEqual(["occurred_at"]);
    },
  );

  it("rejects a numeric occurred_at", () => {
    const r = rejected(validateEvent(body({ occurred_at: 1776075165000 })));
    expect(r.issues.map((i) => i.path)).toEqual(["occurred_at"]);
  });

  for (const field of ["tenant_id", "user_id"] as const) {
    it.each(["a.b", "a b", "_reserved", "", "-x", "a/b", "a*", "a>", "x".repeat(129)])(`rejects ${field} %j`, (id) => {
      const r = rejected(validateEvent(body({ [field]: id })));
      expect(r.code).toBe(RejectCodes.InvalidEvent);
      expect(r.issues.map((i) => i.path)).toEqual([field]);
      expect(r.message).toContain(`${field}:`);
    });

    it.each(["a", "A-b_c", "0abc", "x".repeat(128)])(`accepts ${field} %j`, (id) => {
      expect(accepted(validateEvent(body({ [field]: id }))).event[field]).toBe(id);
    });

    it(`rejects a non-string ${field}`, () => {
      const r = rejected(validateEvent(body({ [field]: 42 })));
      expect(r.issues.map((i) => i.path)).toEqual([field]);
    });
  }

  it("checks event_id and event_type", () => {
    expect(accepted(validateEvent(body({ event_id: "a.b:c-d_1" }))).event.event_id).toBe("a.b:c-d_1");
    expect(rejected(validateEvent(body({ event_id: "has space" }))).issues.map((i) => i.path)).toEqual(["event_id"]);
    expect(rejected(validateEvent(body({ event_id: ".lead" }))).issues.map((i) => i.path)).toEqual(["event_id"]);
    expect(rejected(validateEvent(body({ event_type: "lesson..completed" }))).issues.map((i) => i.path)).toEqual(["event_type"]);
    expect(rejected(validateEvent(body({ event_type: "lesson.*" }))).issues.map((i) => i.path)).toEqual(["event_type"]);
  });

  it("reports every bad field, not only the first", () => {
    const r = rejected(validateEvent({ event_type: "x", tenant_id: "a.b", user_id: "u", occurred_at: "yesterday", payload: [] }));
    expect(r.code).toBe("invalid_event");
    expect(r.issues.map((i) => i.path).sort()).toEqual(["event_id", "occurred_at", "payload", "tenant_id"]);
    for (const i of r.issues) expect(r.message).toContain(`${i.path}: ${i.message}`);
  });

  it("rejects bodies that are not objects with a (root) issue", () => {
    for (const b of [null, 3, "x", [body()]]) {
      const r = rejected(validateEvent(b));
      expect(r.code).toBe("invalid_event");
      expect(r.issues[0]?.path).toBe("(root)");
    }
  });
});

describe("decodeMessage", () => {
  it("decodes a valid message whose subject, body and msg id agree", () => {
    const v = accepted(decodeMessage(SUBJECT, bytes(body({ payload: { x: 1 } })), MSG_ID, OPTS));
    expect(v.event).toMatchObject({ event_id: "evt-1", event_type: "lesson.completed", tenant_id: "acme", user_id: "u1", payload: { x: 1 } });
    expect(v.occurredAt).toBe(Date.parse("2026-04-13T10:12:45Z"));
  });

  it("accepts a missing msg id and defaults payload", () => {
    const v = accepted(decodeMessage(SUBJECT, bytes(body()), undefined, OPTS));
    expect(v.event.payload).toEqual({});
  });

  it("decodes a view into a larger buffer (non-zero byteOffset)", () => {
    const inner = bytes(body());
    const big = new Uint8Array(inner.length + 20).fill(0x7b); // '{' garbage around it
    big.set(inner, 10);
    const view = big.subarray(10, 10 + inner.length);
    expect(accepted(decodeMessage(SUBJECT, view, MSG_ID, OPTS)).event.event_id).toBe("evt-1");
  });

  it("rejects data larger than maxBytes, before anything else", () => {
    const data = bytes(body());
    expect(decodeMessage(SUBJECT, data, MSG_ID, { ...OPTS, maxBytes: data.length }).ok).toBe(true);
    const r = rejected(decodeMessage("not.a.subject", data, "other", { ...OPTS, maxBytes: data.length - 1 }));
    expect(r.code).toBe("too_large");
    expect(r.issues).toHaveLength(1);
    expect(r.message).toContain(String(data.length));
  });

  it("rejects a subject that is not partitioned", () => {
    const r = rejected(decodeMessage("ach.events.acme.u1.lesson.completed", bytes(body()), undefined, OPTS));
    expect(r.code).toBe("bad_subject");
    expect(r.issues).toEqual([{ path: "(subject)", message: expect.stringContaining("ach.events.acme.u1.lesson.completed") }]);
  });

  it("rejects bodies that are not JSON", () => {
    const r = rejected(decodeMessage(SUBJECT, enc.encode("{not json"), undefined, OPTS));
    expect(r.code).toBe("bad_json");
    expect(r.issues[0]?.path).toBe("(body)");
    expect(rejected(decodeMessage(SUBJECT, new Uint8Array(0), undefined, OPTS)).code).toBe("bad_json");
  });

  it("rejects schema failures with the field path", () => {
    const { user_id: _omit, ...noUser } = body();
    const r = rejected(decodeMessage(SUBJECT, bytes(noUser), undefined, OPTS));
    expect(r.code).toBe("invalid_event");
    expect(r.issues.map((i) => i.path)).toEqual(["user_id"]);

    const r2 = rejected(decodeMessage(SUBJECT, bytes(body({ occurred_at: "yesterday" })), undefined, OPTS));
    expect(r2.code).toBe("invalid_event");
    expect(r2.issues.map((i) => i.path)).toEqual(["occurred_at"]);
  });

  it("rejects a body that disagrees with the subject, one issue per field", () => {
    const r = rejected(decodeMessage(SUBJECT, bytes(body({ tenant_id: "other", user_id: "u2" })), undefined, OPTS));
    expect(r.code).toBe("subject_mismatch");
    expect(r.issues.map((i) => i.path)).toEqual(["tenant_id", "user_id"]);
    expect(r.issues[0]?.message).toContain("other");
    expect(r.issues[0]?.message).toContain("acme");

    const t = rejected(decodeMessage(SUBJECT, bytes(body({ event_type: "lesson.started" })), undefined, OPTS));
    expect(t.code).toBe("subject_mismatch");
    expect(t.issues.map((i) => i.path)).toEqual(["event_type"]);

    const all = rejected(
      decodeMessage(`ach.p.${partitionOf("t2", "u9", P)}.t2.u9.a.b`, bytes(body()), undefined, OPTS),
    );
    expect(all.issues.map((i) => i.path)).toEqual(["tenant_id", "user_id", "event_type"]);
  });

  it("checks subject agreement before the msg id", () => {
    const r = rejected(decodeMessage(SUBJECT, bytes(body({ user_id: "u2" })), "different", OPTS));
    expect(r.code).toBe("subject_mismatch");
  });

  it("rejects a msg id that is not <tenant>:<user>:<event_id>, naming the one it must be", () => {
    for (const id of ["acme:u1:evt-2", "evt-1", "acme:u2:evt-1", "other:u1:evt-1"]) {
      const r = rejected(decodeMessage(SUBJECT, bytes(body()), id, OPTS));
      expect(r.code).toBe("msg_id_mismatch");
      expect(r.issues).toHaveLength(1);
      expect(r.issues[0]?.path).toBe("(header) Nats-Msg-Id");
      expect(r.message).toContain(id);
      expect(r.message).toContain("must be acme:u1:evt-1");
    }
    expect(eventMsgId("acme", "u1", "evt-1")).toBe(MSG_ID);
  });

  it("rejects a message stored on another partition than its user's, before reading the body", () => {
    const home = partitionOf("acme", "u1", P);
    for (const k of [0, 3, 7, 1023].filter((k) => k !== home)) {
      const r = rejected(decodeMessage(`ach.p.${k}.acme.u1.lesson.completed`, bytes(body()), MSG_ID, OPTS));
      expect(r.code).toBe("wrong_partition");
      expect(r.message).toContain(`partition ${home}, not ${k}`);
    }
    expect(rejected(decodeMessage(`ach.p.${(home + 1) % P}.acme.u1.x`, enc.encode("{not json"), undefined, OPTS)).code).toBe("wrong_partition");
  });
});

describe("parsePartitionedSubject is strict", () => {
  it("refuses empty or non-decimal partition tokens and empty tokens", () => {
    expect(parsePartitionedSubject("ach.p..acme.u1.x")).toBeUndefined();
    expect(parsePartitionedSubject("ach.p.0x3.acme.u1.x")).toBeUndefined();
    expect(parsePartitionedSubject("ach.p.3.acme.u1.")).toBeUndefined();
    expect(parsePartitionedSubject("ach.p.3.acme.u1.x")).toEqual({ partition: 3, tenant: "acme", user: "u1", eventType: "x" });
  });
});

/**
 * Generated hostile inputs for the fuzz suite (test/integration/fuzz.test.ts):
 * event bodies written as JSON text (so they can hold `1e400`, `__proto__`
 * keys, duplicate keys and escaped lone surrogates), each field valid or
 * drawn from a table of hostile values, plus raw non-JSON bytes; and what
 * the engine must decide for each one, computed offline with the engine's
 * own decoding and validation.
 */
import fc from "fast-check";
import { jsonDepth } from "../../src/api/body.ts";
import { decodeMessage, EVENT_ID, EVENT_TYPE, eventMsgId, eventSubject, ID_TOKEN, partitionOf, RejectCodes, validateEvent, type EventLimits } from "../../src/events/mod.ts";

/** JSON text of a field's value; undefined leaves the field out. */
type Gen = (n: number) => string | undefined;
/** A labelled way to write a field, so a failure names what was hostile. */
type Variant = [label: string, gen: Gen];

const DAY = 86_400_000;
const s = (v: string): string => JSON.stringify(v);
/** JSON string text with every non-ASCII character escaped (`\u202e`, surrogate pairs, lone surrogates). */
const esc = (v: string): string => `"${[...v].map((c) => (c.charCodeAt(0) < 0x80 && c !== '"' && c !== "\\" && c >= " " ? c : [...c].map((u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, "0")}`).join(""))).join("")}"`;
/** An object nested `depth` levels (the object itself is level 1), alternating objects and lists. */
export function nested(depth: number): string {
  let inner = "1";
  for (let d = depth; d >= 1; d--) inner = d % 2 ? `{"k":${inner}}` : `[${inner}]`;
  return inner.startsWith("[") ? `{"k":${inner}}` : inner;
}

export const TENANTS = ["acme", "globex", "initech"];
export const USERS_PER_TENANT = 7;
export const TYPES = ["lesson.completed", "lesson.completed", "purchase.placed", "purchase.placed", "page.viewed", "team.invited", "quiz.passed"];

/** How each field can be hostile. */
const HOSTILE: Record<string, Variant[]> = {
  event_id: [
    ["event_id:empty", () => s("")],
    ["event_id:space", (n) => s(`fz ${n}`)],
    ["event_id:leading-dash", (n) => s(`-fz${n}`)],
    ["event_id:129-chars", (n) => s(`fz${n}-`.padEnd(129, "x"))],
    ["event_id:nul", (n) => s(`fz${n}\u0000`)],
    ["event_id:emoji", (n) => s(`fz${n}😀`)],
    ["event_id:rtl", (n) => esc(`\u202efz${n}`)],
    ["event_id:lone-surrogate", (n) => esc(`fz${n}\ud800`)],
    ["event_id:crlf", (n) => s(`fz${n}\r\nX-Injected: 1`)],
    ["event_id:number", (n) => String(n)],
    ["event_id:null", () => "null"],
    ["event_id:missing", () => undefined],
  ],
  event_type: [
    ["event_type:10000-chars", () => s("a".repeat(10_000))],
    ["event_type:256-chars", () => s("b".repeat(256))],
    ["event_type:empty-token", () => s("lesson..completed")],
    ["event_type:trailing-dot", () => s("lesson.completed.")],
    ["event_type:space", () => s("lesson completed")],
    ["event_type:wildcard", () => s("lesson.*")],
    ["event_type:gt", () => s("lesson.>")],
    ["event_type:accents", () => s("léçon.done")],
    ["event_type:rtl", () => esc("\u202elesson.completed")],
    ["event_type:17-tokens", () => s(Array.from({ length: 17 }, (_, i) => `t${i}`).join("."))],
    ["event_type:crlf", () => s("lesson.completed\r\nX-Injected: 1")],
    ["event_type:nul", () => s("lesson\u0000.completed")],
    ["event_type:emoji", () => s("🎉.done")],
    ["event_type:number", () => "42"],
    ["event_type:null", () => "null"],
    ["event_type:missing", () => undefined],
  ],
  tenant_id: [
    ["tenant_id:underscore", () => s("_ach")],
    ["tenant_id:dot", () => s("ac.me")],
    ["tenant_id:space", () => s("ac me")],
    ["tenant_id:129-chars", () => s("t".repeat(129))],
    ["tenant_id:empty", () => s("")],
    ["tenant_id:nul", () => s("acme\u0000")],
    ["tenant_id:rtl", () => esc("\u202eacme")],
    ["tenant_id:emoji", () => s("😀")],
    ["tenant_id:crlf", () => s("acme\r\nX: 1")],
    ["tenant_id:lone-surrogate", () => esc("acme\udc00")],
    ["tenant_id:number", () => "42"],
    ["tenant_id:object", () => '{"a":1}'],
    ["tenant_id:missing", () => undefined],
  ],
  user_id: [
    ["user_id:wildcard", () => s("*")],
    ["user_id:gt", () => s(">")],
    ["user_id:dot", () => s("u.1")],
    ["user_id:129-chars", () => s("u".repeat(129))],
    ["user_id:empty", () => s("")],
    ["user_id:rtl", () => esc("u1\u200f")],
    ["user_id:emoji", () => s("u😀")],
    ["user_id:number", () => "7"],
    ["user_id:array", () => '["u1"]'],
    ["user_id:missing", () => undefined],
  ],
  occurred_at: [
    ["occurred_at:9999", () => s("9999-12-31T23:59:59Z")],
    ["occurred_at:+2d", () => s(new Date(Date.now() + 2 * DAY).toISOString())],
    ["occurred_at:+400d", () => s(new Date(Date.now() + 400 * DAY).toISOString())],
    ["occurred_at:1969", () => s("1969-12-31T23:59:59Z")],
    ["occurred_at:0001", () => s("0001-01-01T00:00:00Z")],
    ["occurred_at:1970+01:00", () => s("1970-01-01T00:30:00+01:00")],
    ["occurred_at:feb-30", () => s("2026-02-30T10:00:00Z")],
    ["occurred_at:leap-second", () => s("2026-06-30T23:59:60Z")],
    ["occurred_at:hour-25", () => s("2026-04-13T25:00:00Z")],
    ["occurred_at:offset-24h", () => s("2026-04-13T10:12:45+24:00")],
    ["occurred_at:no-zone", () => s("2026-04-13T10:12:45")],
    ["occurred_at:date-only", () => s("2026-04-13")],
    ["occurred_at:lowercase", () => s("2026-04-13t10:12:45z")],
    ["occurred_at:extended-year", () => s("+275760-09-13T00:00:00Z")],
    ["occurred_at:words", () => s("yesterday")],
    ["occurred_at:empty", () => s("")],
    ["occurred_at:epoch-number", () => "1712000000000"],
    ["occurred_at:null", () => "null"],
    ["occurred_at:missing", () => undefined],
  ],
  source: [
    ["source:129-chars", () => s("w".repeat(129))],
    ["source:number", () => "1"],
    ["source:rtl", () => esc("\u202eweb")],
    ["source:nul", () => s("web\u0000")],
    ["source:emoji", () => s("📱")],
    ["source:object", () => '{"a":1}'],
    ["source:null", () => "null"],
  ],
  payload: [
    ["payload:depth-15", () => nested(15)],
    ["payload:depth-16", () => nested(16)],
    ["payload:depth-17", () => nested(17)],
    ["payload:depth-30", () => nested(30)],
    ["payload:depth-33", () => nested(33)],
    ["payload:depth-100", () => nested(100)],
    ["payload:depth-10000", () => nested(10_000)],
    ["payload:proto", () => '{"__proto__":{"amount":500},"amount":5}'],
    ["payload:nested-proto", () => '{"a":{"b":[{"__proto__":{"x":1}}]}}'],
    ["payload:constructor", () => '{"constructor":{"prototype":{"amount":900}},"amount":3}'],
    ["payload:prototype-names", () => '{"toString":1,"hasOwnProperty":2,"valueOf":3,"amount":7,"duration_seconds":700}'],
    ["payload:amount-string", () => '{"amount":"150","duration_seconds":"900"}'],
    ["payload:100KB-string", () => `{"note":${s("x".repeat(100 * 1024))}}`],
    ["payload:30KB-string", () => `{"note":${s("y".repeat(30 * 1024))},"amount":10}`],
    ["payload:2001-keys", () => `{${Array.from({ length: 2001 }, (_, i) => `"k${i}":${i}`).join(",")}}`],
    ["payload:1999-items", () => `{"list":[${Array.from({ length: 1998 }, (_, i) => i).join(",")}]}`],
    ["payload:unicode-keys", () => `{${esc("\u202eamount")}:1,"😀":"🎉",${esc("\u0000")}:1,${esc("\ud800")}:2}`],
    ["payload:array", () => "[1,2]"],
    ["payload:string", () => s("payload")],
    ["payload:number", () => "42"],
    ["payload:null", () => "null"],
  ],
  attributes: [
    ["attributes:bad-timezone", () => '{"timezone":"Mars/Olympus_Mons"}'],
    ["attributes:timezone-number", () => '{"timezone":2}'],
    ["attributes:proto", () => '{"__proto__":{"plan":"pro"}}'],
    ["attributes:constructor", () => '{"constructor":"pro","plan":"pro"}'],
    ["attributes:depth-17", () => nested(17)],
    ["attributes:string", () => s("pro")],
    ["attributes:null", () => "null"],
  ],
};

/** Hostile numbers for `payload.amount` (and durations): huge, tiny, negative, beyond ±1e15, infinite as JSON reads them. */
const NUMBERS = ["1e308", "-1e308", "1e15", "-1e15", "1000000000000001", "1e-300", "5e-324", "-0", "0.1", "-50", "1e400", "-1e400", "999999999999999.9", "123456.1234567", "150", "99.999999"];

/** Whole bodies that are not an event object. */
const RAW: [label: string, bytes: fc.Arbitrary<Uint8Array>][] = [
  ["raw:random-bytes", fc.uint8Array({ minLength: 1, maxLength: 200 })],
  ["raw:invalid-utf8", fc.constant(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]))],
  ...(["{", "", "   ", "null", "[]", "42", '"event"', "[1,2]", "{}", '{"events":[]}', "true", "{\"a\":1,}", "\uFEFF{}", "NaN"] as const).map((t): [string, fc.Arbitrary<Uint8Array>] => [`raw:${JSON.stringify(t)}`, fc.constant(new TextEncoder().encode(t))]),
];

/** How a NATS input's subject and msg id are chosen. */
export type Route = { subject: "own" | "other-user" | "other-type" | "other-tenant" | "direct-home" | "direct-wrong"; msgId: "scoped" | "none" | "other-user" | "junk"; extra: "none" | "ach-probe" | "forged-ach" };

/** One generated input before it is numbered. */
export type Spec =
  | { kind: "event"; via: "nats" | "http"; route: Route; fields: [key: string, label: string, gen: Gen][] }
  | { kind: "raw"; via: "nats" | "http"; route: Route; label: string; bytes: Uint8Array };

const weighted = <T>(pairs: [T, number][]): fc.Arbitrary<T> => fc.oneof(...pairs.map(([v, weight]) => ({ arbitrary: fc.constant(v), weight })));

const routeArb: fc.Arbitrary<Route> = fc.record({
  subject: weighted<Route["subject"]>([["own", 85], ["other-user", 4], ["other-type", 3], ["other-tenant", 3], ["direct-home", 2], ["direct-wrong", 3]]),
  msgId: weighted<Route["msgId"]>([["scoped", 82], ["none", 6], ["other-user", 6], ["junk", 6]]),
  extra: weighted<Route["extra"]>([["none", 90], ["ach-probe", 5], ["forged-ach", 5]]),
});

/** A valid value of each field (the id fields take the input number, so ids are unique). */
function validFields(): fc.Arbitrary<[string, string, Gen][]> {
  return fc
    .record({
      tenant: fc.constantFrom(...TENANTS),
      user: fc.integer({ min: 0, max: USERS_PER_TENANT - 1 }),
      type: fc.constantFrom(...TYPES),
      idForm: fc.constantFrom("plain", "colons", "dots"),
      // Event time: within the last 30 days, sometimes just under the 1-day horizon, sometimes the epoch.
      when: fc.oneof({ arbitrary: fc.integer({ min: -30 * DAY, max: 0 }), weight: 20 }, { arbitrary: fc.constant(23 * 3_600_000), weight: 1 }, { arbitrary: fc.constant(Number.NaN), weight: 1 }),
      offset: fc.boolean(),
      source: fc.constantFrom("web", "mobile-app", undefined),
      amount: fc.oneof({ arbitrary: fc.integer({ min: 1, max: 300 }).map(String), weight: 6 }, { arbitrary: fc.constantFrom(...NUMBERS), weight: 1 }),
      duration: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 1500 }).map(String), weight: 8 }, { arbitrary: fc.constantFrom(...NUMBERS), weight: 1 }),
      attributes: fc.constantFrom(undefined, undefined, '{"plan":"pro"}', '{"plan":"free"}', '{"plan":"team","timezone":"Europe/Berlin"}', '{"timezone":"America/Los_Angeles"}'),
      businessKey: fc.boolean(),
    })
    .map((v) => {
      const time = (): string => {
        if (Number.isNaN(v.when)) return s("1970-01-01T00:00:00Z");
        const t = Date.now() + v.when;
        return s(v.offset ? new Date(t + 2 * 3_600_000).toISOString().replace(/\.\d+Z$/, "+02:00") : new Date(t).toISOString());
      };
      const payload = v.type === "purchase.placed" ? `{"amount":${v.amount},"order_id":"o1"}` : v.type === "lesson.completed" ? `{"duration_seconds":${v.duration},"course_id":"c1"}` : "{}";
      const id = (n: number) => (v.idForm === "plain" ? `fz-${n}` : v.idForm === "colons" ? `fz:${n}:x` : `fz.${n}.y`);
      const fields: [string, string, Gen][] = [
        ["event_id", "", (n) => s(id(n))],
        ["event_type", "", () => s(v.type)],
        ["tenant_id", "", () => s(v.tenant)],
        ["user_id", "", () => s(`u${v.user}`)],
        ["occurred_at", "", time],
        ["source", "", () => (v.source === undefined ? undefined : s(v.source))],
        ["payload", "", () => payload],
        ["attributes", "", () => v.attributes],
        ["business_key", "", (n) => (v.businessKey ? s(`bk-${n}`) : undefined)],
      ];
      return fields;
    });
}

/** Top-level oddities: a `__proto__` or `constructor` key, unknown fields, a duplicated key (the last one wins). */
const EXTRAS: [label: string, key: string, gen: Gen][] = [
  ["top:proto", "__proto__", () => '{"tenant_id":"acme"}'],
  ["top:constructor", "constructor", () => '{"name":"x"}'],
  ["top:unknown-field", "extra_field", () => "1"],
  ["top:duplicate-tenant", "tenant_id", () => s("globex")],
  ["top:duplicate-user", "user_id", () => s("u0")],
];

/** Every hostile variant of every field, flat. */
const HOSTILE_FLAT: [key: string, label: string, gen: Gen][] = Object.entries(HOSTILE).flatMap(([key, vs]) => vs.map(([label, gen]): [string, string, Gen] => [key, label, gen]));

const eventArb: fc.Arbitrary<Spec> = fc
  .record({
    fields: validFields(),
    // Half the events are valid; the others have one or two hostile fields.
    hostile: fc.oneof({ arbitrary: fc.constant([]), weight: 50 }, { arbitrary: fc.array(fc.constantFrom(...HOSTILE_FLAT), { minLength: 1, maxLength: 2 }), weight: 40 }),
    extra: fc.oneof({ arbitrary: fc.constant(undefined), weight: 15 }, { arbitrary: fc.constantFrom(...EXTRAS), weight: 1 }),
    via: fc.constantFrom("nats" as const, "http" as const),
    route: routeArb,
  })
  .map(({ fields, hostile, extra, via, route }): Spec => {
    const out = [...fields];
    for (const h of hostile) out[out.findIndex(([k]) => k === h[0])] = h;
    if (extra) out.push([extra[1], extra[0], extra[2]]);
    return { kind: "event", via, route, fields: out };
  });

const rawArb: fc.Arbitrary<Spec> = fc
  .record({ raw: fc.constantFrom(...RAW).chain(([label, bytes]) => bytes.map((b) => ({ label, bytes: b }))), via: fc.constantFrom("nats" as const, "http" as const), route: routeArb })
  .map(({ raw, via, route }) => ({ kind: "raw" as const, via, route, label: raw.label, bytes: raw.bytes }));

/** Hostile and valid inputs, mixed. */
export const specArb: fc.Arbitrary<Spec> = fc.oneof({ arbitrary: eventArb, weight: 92 }, { arbitrary: rawArb, weight: 8 });

/** The named oversized cases, added to every run once (the generator draws smaller ones). */
export function fixedSpecs(): Spec[] {
  const base = (via: "nats" | "http", label: string, payload: string): Spec => ({
    kind: "event",
    via,
    route: { subject: "own", msgId: "scoped", extra: "none" },
    fields: [
      ["event_id", "", (n) => s(`fz-${n}`)],
      ["event_type", "", () => s("purchase.placed")],
      ["tenant_id", "", () => s("acme")],
      ["user_id", "", () => s("u1")],
      ["occurred_at", "", () => s(new Date(Date.now() - 60_000).toISOString())],
      ["payload", label, () => payload],
    ],
  });
  return [
    base("http", "payload:1.1MiB-string", `{"amount":5,"note":${s("z".repeat(1_153_434))}}`),
    base("http", "payload:700KB-string", `{"amount":5,"note":${s("z".repeat(700 * 1024))}}`),
    base("nats", "payload:700KB-string", `{"amount":5,"note":${s("z".repeat(700 * 1024))}}`),
    base("http", "payload:100KB-string", `{"amount":5,"note":${s("z".repeat(102_400))}}`),
    base("nats", "payload:100KB-string", `{"amount":5,"note":${s("z".repeat(102_400))}}`),
    base("nats", "payload:1.1MiB-string", `{"amount":5,"note":${s("z".repeat(1_153_434))}}`),
    base("http", "payload:depth-10000", nested(10_000)),
    base("nats", "payload:depth-10000", nested(10_000)),
    base("http", "payload:amount-1e308", '{"amount":1e308}'),
    base("nats", "payload:amount--1e308", '{"amount":-1e308}'),
  ];
}

/** A numbered input, ready to send. */
export type FuzzInput = {
  n: number;
  via: "nats" | "http";
  /** What is hostile about it ("valid" when nothing is). */
  labels: string[];
  body: Uint8Array;
  /** NATS: where it is published, its msg id and extra headers. */
  subject: string;
  msgId: string | undefined;
  headers: [string, string][];
};

const enc = new TextEncoder();
/** Where a NATS input whose ids cannot be subject tokens is published. */
export const FUZZ_SUBJECT = eventSubject("fuzz", "fuzz", "fuzz.input");

function parsed(body: Uint8Array): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(Buffer.from(body).toString("utf8")) as unknown;
    return v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Numbers a spec and writes its bytes, subject and msg id. */
export function materialize(spec: Spec, n: number, partitions: number): FuzzInput {
  let body: Uint8Array;
  let labels: string[];
  if (spec.kind === "raw") {
    body = spec.bytes;
    labels = [spec.label];
  } else {
    const parts: string[] = [];
    for (const [k, , gen] of spec.fields) {
      const v = gen(n);
      if (v !== undefined) parts.push(`${s(k)}:${v}`);
    }
    body = enc.encode(`{${parts.join(",")}}`);
    labels = spec.fields.map(([, l]) => l).filter(Boolean);
  }
  const r = spec.route;
  const e = parsed(body);
  const str = (k: string) => (typeof e?.[k] === "string" ? (e[k] as string) : undefined);
  const [t, u, type, id] = [str("tenant_id"), str("user_id"), str("event_type"), str("event_id")];
  const tokens = t !== undefined && u !== undefined && type !== undefined && ID_TOKEN.test(t) && ID_TOKEN.test(u) && EVENT_TYPE.test(type) && type.length <= 255;
  let subject = FUZZ_SUBJECT;
  let msgId: string | undefined;
  const headers: [string, string][] = [["X-Fuzz", String(n)]];
  if (spec.via === "nats") {
    if (tokens) {
      const other = `u${(Number(u.slice(1)) + 1) % USERS_PER_TENANT}`;
      subject = {
        own: eventSubject(t, u, type),
        "other-user": eventSubject(t, other, type),
        "other-type": eventSubject(t, u, type === "page.viewed" ? "team.invited" : "page.viewed"),
        "other-tenant": eventSubject(t === "acme" ? "globex" : "acme", u, type),
        "direct-home": `ach.p.${partitionOf(t, u, partitions)}.${t}.${u}.${type}`,
        "direct-wrong": `ach.p.${(partitionOf(t, u, partitions) + 1) % partitions}.${t}.${u}.${type}`,
      }[r.subject];
      if (r.subject !== "own") labels.push(`route:${r.subject}`);
    }
    const scoped = tokens && id !== undefined && EVENT_ID.test(id);
    if (r.msgId === "junk" || (!scoped && r.msgId !== "none")) msgId = `junk-${n}`;
    else if (r.msgId === "other-user" && scoped) msgId = eventMsgId(t, `u${(Number(u.slice(1)) + 3) % USERS_PER_TENANT}`, id);
    else if (r.msgId === "scoped" && scoped) msgId = eventMsgId(t, u, id);
    if (r.msgId !== "scoped") labels.push(`msg-id:${msgId === undefined ? "none" : r.msgId}`);
    if (r.extra === "ach-probe") headers.push(["Ach-Probe", "1"]);
    if (r.extra === "forged-ach") headers.push(["Ach-Reason", "forged"], ["Ach-Subject", "ach.events.acme.u0.forged"]);
    if (r.extra !== "none") labels.push(`header:${r.extra}`);
  }
  return { n, via: spec.via, labels: labels.length ? labels : ["valid"], body, subject, msgId, headers };
}

/** The subject the server stores a NATS input under (the partition mapping applied). */
export function storedSubject(subject: string, partitions: number): string {
  const t = subject.split(".");
  if (t[0] === "ach" && t[1] === "events" && t.length >= 5) return `ach.p.${partitionOf(t[2]!, t[3]!, partitions)}.${t.slice(2).join(".")}`;
  return subject;
}

/** What the engine must decide: accepted, or rejected with this reason. */
export type Fate = { ok: true } | { ok: false; reason: string };

/** The worker's decision on a stored NATS input, computed offline the way the worker computes it. */
export function natsFate(input: FuzzInput, opts: { partitions: number; maxBytes: number; limits: EventLimits; storedAt: number }): Fate {
  const r = decodeMessage(storedSubject(input.subject, opts.partitions), input.body, input.msgId, { maxBytes: opts.maxBytes, partitions: opts.partitions, limits: opts.limits, storedAt: opts.storedAt });
  return r.ok ? { ok: true } : { ok: false, reason: r.rejection.code };
}

/** The ingest's decision on one event of an HTTP request: validation, then the size of its re-serialised body. */
export function httpEventFate(raw: unknown, opts: { maxBytes: number; limits: EventLimits; storedAt: number }): Fate {
  const r = validateEvent(raw, { limits: opts.limits, storedAt: opts.storedAt });
  if (!r.ok) return { ok: false, reason: r.rejection.code };
  if (Buffer.byteLength(JSON.stringify(raw ?? null)) > opts.maxBytes) return { ok: false, reason: RejectCodes.TooLarge };
  return { ok: true };
}

/** What a whole HTTP request must be answered: a status, the request's error code, and the events the route takes from it. */
export type RequestFate = { status: number; error?: string; events?: unknown[]; single?: boolean };

/** The route's reading of a request body, offline (size, depth before parsing, JSON, then the body's form). */
export function httpRequestFate(body: Uint8Array, opts: { maxBodyBytes: number; maxDepth: number; maxBatch: number }): RequestFate {
  if (body.length > opts.maxBodyBytes) return { status: 413 };
  const text = Buffer.from(body).toString("utf8");
  if (jsonDepth(text, opts.maxDepth) > opts.maxDepth) return { status: 400, error: "too_deep" };
  let v: unknown;
  try {
    v = text.trim() === "" ? undefined : JSON.parse(text);
  } catch {
    return { status: 400, error: "bad_json" };
  }
  const single = !Array.isArray(v) && !(v && typeof v === "object" && Array.isArray((v as { events?: unknown }).events));
  if (v === undefined || v === null || (single && typeof v !== "object")) return { status: 400, error: "bad_request" };
  const events = Array.isArray(v) ? v : single ? [v] : (v as { events: unknown[] }).events;
  if (events.length === 0 || events.length > opts.maxBatch) return { status: 400, error: "bad_request" };
  return { status: 200, events, single };
}

/**
 * Gives about one NATS input in a hundred the msg id of a later HTTP event of
 * another user, as a producer that guessed it would: the NATS message is
 * dead-lettered (`msg_id_mismatch`), and the HTTP event, answered
 * `duplicate` by the server's window, must be stored anyway (`accepted`).
 */
export function stealMsgIds(inputs: FuzzInput[], every = 97): void {
  for (const thief of inputs) {
    if (thief.via !== "nats" || thief.n % every !== 13 || !thief.labels.every((l) => l === "valid" || l.startsWith("occurred_at") || l.startsWith("payload"))) continue;
    const victim = inputs.find((v) => {
      if (v.via !== "http" || v.n < thief.n + 40) return false;
      const e = parsed(v.body);
      return typeof e?.tenant_id === "string" && typeof e.user_id === "string" && typeof e.event_id === "string" && ID_TOKEN.test(e.tenant_id) && ID_TOKEN.test(e.user_id) && EVENT_ID.test(e.event_id);
    });
    if (!victim) continue;
    const e = parsed(victim.body)!;
    thief.msgId = eventMsgId(e.tenant_id as string, e.user_id as string, e.event_id as string);
    thief.labels = [...thief.labels.filter((l) => l !== "valid"), `msg-id:stolen-from-#${victim.n}`];
    victim.labels = [...victim.labels.filter((l) => l !== "valid"), `msg-id:stolen-by-#${thief.n}`];
  }
}

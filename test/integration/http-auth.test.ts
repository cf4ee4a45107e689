/**
 * The HTTP API's trust boundary: every route × every kind of caller gives
 * an exact status (a new route without an entry fails the matrix), keys
 * are shown once, stored hashed and revoked everywhere within a second,
 * and rate limits, quotas and request timeouts answer as documented.
 */
import { execFile } from "node:child_process";
import { connect as tcp } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { declaredRoutes } from "../../src/api/mod.ts";
import type { Engine } from "../../src/engine.ts";
import { Buckets, Streams } from "../../src/nats/mod.ts";
import { adminKey, eventually, fixture, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev } from "../helpers/stream.ts";

const BIN = fileURLToPath(new URL("../../bin/achd.js", import.meta.url));

type Caller = "none" | "A:events" | "A:read" | "A:rules" | "A:webhooks" | "B:all" | "admin";
const CALLERS: Caller[] = ["none", "A:events", "A:read", "A:rules", "A:webhooks", "B:all", "admin"];

/** One row of the matrix: a request and the status each caller must get. */
type Row = { method: string; path: string; body?: unknown; expect: Record<Caller, number> };

const pub = (s: number): Record<Caller, number> => ({ none: s, "A:events": s, "A:read": s, "A:rules": s, "A:webhooks": s, "B:all": s, admin: s });
const admin = (s: number): Record<Caller, number> => ({ none: 401, "A:events": 403, "A:read": 403, "A:rules": 403, "A:webhooks": 403, "B:all": 403, admin: s });
const tenant = (scope: "events" | "read" | "rules" | "webhooks", s: number): Record<Caller, number> => ({
  none: 401,
  "A:events": scope === "events" ? s : 403,
  "A:read": scope === "read" ? s : 403,
  "A:rules": scope === "rules" ? s : 403,
  "A:webhooks": scope === "webhooks" ? s : 403,
  "B:all": 403,
  admin: s,
});

/** Every route, by `METHOD url` as fastify registers it. HEAD routes answer as their GET. */
const MATRIX: Record<string, Row> = {
  "GET /openapi.json": { method: "GET", path: "/openapi.json", expect: pub(200) },
  "GET /healthz": { method: "GET", path: "/healthz", expect: pub(200) },
  // The browsable API reference (@fastify/swagger-ui), public like the document.
  "GET /docs": { method: "GET", path: "/docs", expect: pub(200) },
  "GET /docs/": { method: "GET", path: "/docs/", expect: pub(200) },
  "GET /docs/static/index.html": { method: "GET", path: "/docs/static/index.html", expect: pub(200) },
  "GET /docs/static/swagger-initializer.js": { method: "GET", path: "/docs/static/swagger-initializer.js", expect: pub(200) },
  "GET /docs/static/*": { method: "GET", path: "/docs/static/swagger-ui.css", expect: pub(200) },
  "GET /docs/json": { method: "GET", path: "/docs/json", expect: pub(200) },
  "GET /docs/yaml": { method: "GET", path: "/docs/yaml", expect: pub(200) },
  "GET /readyz": { method: "GET", path: "/readyz", expect: pub(200) },
  // An event of tenant tA that is invalid (no user): authorized callers get 422, and it goes to the DLQ.
  "POST /v1/events": { method: "POST", path: "/v1/events", body: { event_id: "m1", event_type: "x", tenant_id: "tA", occurred_at: "2026-01-01T00:00:00Z" }, expect: tenant("events", 422) },
  "GET /v1/tenants/:tenant/users/:user/achievements": { method: "GET", path: "/v1/tenants/tA/users/u1/achievements", expect: tenant("read", 200) },
  "GET /v1/tenants/:tenant/rules": { method: "GET", path: "/v1/tenants/tA/rules", expect: tenant("read", 200) },
  "PUT /v1/tenants/:tenant/rules/:id": { method: "PUT", path: "/v1/tenants/tA/rules/r1", body: [], expect: tenant("rules", 400) },
  "DELETE /v1/tenants/:tenant/rules/:id": { method: "DELETE", path: "/v1/tenants/tA/rules/nope", expect: tenant("rules", 404) },
  "GET /v1/rules": { method: "GET", path: "/v1/rules", expect: admin(200) },
  "PUT /v1/rules/:id": { method: "PUT", path: "/v1/rules/r1", body: [], expect: admin(400) },
  "DELETE /v1/rules/:id": { method: "DELETE", path: "/v1/rules/nope", expect: admin(404) },
  "GET /v1/dlq": { method: "GET", path: "/v1/dlq", expect: admin(200) },
  "GET /v1/dlq/:seq": { method: "GET", path: "/v1/dlq/999999", expect: admin(404) },
  "POST /v1/dlq/:seq/redrive": { method: "POST", path: "/v1/dlq/999999/redrive", expect: admin(404) },
  "GET /v1/status": { method: "GET", path: "/v1/status", expect: admin(200) },
  "GET /v1/stats": { method: "GET", path: "/v1/stats", expect: admin(200) },
  // The metrics scope: admin keys hold it; tenant keys cannot (test/integration/metrics.test.ts uses a metrics-only key).
  "GET /metrics": { method: "GET", path: "/metrics", expect: admin(200) },
  "GET /v1/dashboard": { method: "GET", path: "/v1/dashboard", expect: admin(200) },
  // Streams that never end by themselves: a bad user id answers 400 once the caller is let through.
  "GET /v1/tenants/:tenant/unlocks/stream": { method: "GET", path: "/v1/tenants/tA/unlocks/stream?user=bad.user", expect: tenant("read", 400) },
  "GET /v1/unlocks/stream": { method: "GET", path: "/v1/unlocks/stream?user=bad.user", expect: admin(400) },
  "POST /v1/tenants/:tenant/unlocks/stream-token": { method: "POST", path: "/v1/tenants/tA/unlocks/stream-token", body: { user: "u1" }, expect: tenant("read", 201) },
  // The page is a shell with no data: it reads /v1/dashboard with the key its user signs in with.
  "GET /dashboard": { method: "GET", path: "/dashboard", expect: pub(200) },
  "GET /dashboard/": { method: "GET", path: "/dashboard/", expect: pub(200) },
  "GET /dashboard/assets/:file": { method: "GET", path: "/dashboard/assets/app.js", expect: pub(200) },
  "POST /v1/keys": { method: "POST", path: "/v1/keys", body: {}, expect: admin(400) },
  "GET /v1/keys": { method: "GET", path: "/v1/keys", expect: admin(200) },
  "DELETE /v1/keys/:id": { method: "DELETE", path: "/v1/keys/000000000000", expect: admin(404) },
  "GET /v1/tenants": { method: "GET", path: "/v1/tenants", expect: admin(200) },
  "POST /v1/tenants": { method: "POST", path: "/v1/tenants", body: { tenant: "bad.tenant" }, expect: admin(400) },
  "DELETE /v1/tenants/:tenant": { method: "DELETE", path: "/v1/tenants/nobody", expect: admin(404) },
  // A tenant's webhooks: the webhooks scope (a body without a url is refused; the webhook named does not exist).
  "POST /v1/tenants/:tenant/webhooks": { method: "POST", path: "/v1/tenants/tA/webhooks", body: {}, expect: tenant("webhooks", 400) },
  "GET /v1/tenants/:tenant/webhooks": { method: "GET", path: "/v1/tenants/tA/webhooks", expect: tenant("webhooks", 200) },
  "GET /v1/tenants/:tenant/webhooks/:id": { method: "GET", path: "/v1/tenants/tA/webhooks/wh_0000000000000000", expect: tenant("webhooks", 404) },
  "PATCH /v1/tenants/:tenant/webhooks/:id": { method: "PATCH", path: "/v1/tenants/tA/webhooks/wh_0000000000000000", body: { enabled: true }, expect: tenant("webhooks", 404) },
  "DELETE /v1/tenants/:tenant/webhooks/:id": { method: "DELETE", path: "/v1/tenants/tA/webhooks/wh_0000000000000000", expect: tenant("webhooks", 404) },
  "GET /v1/tenants/:tenant/webhooks/:id/deliveries": { method: "GET", path: "/v1/tenants/tA/webhooks/wh_0000000000000000/deliveries", expect: tenant("webhooks", 404) },
  "GET /v1/tenants/:tenant/webhooks/:id/dead": { method: "GET", path: "/v1/tenants/tA/webhooks/wh_0000000000000000/dead", expect: tenant("webhooks", 404) },
  "POST /v1/tenants/:tenant/webhooks/:id/dead/:seq/redeliver": { method: "POST", path: "/v1/tenants/tA/webhooks/wh_0000000000000000/dead/1/redeliver", expect: tenant("webhooks", 404) },
  "GET /v1/webhooks/dead": { method: "GET", path: "/v1/webhooks/dead", expect: admin(200) },
  // History: a shadow run or backfill of a version that is not stored is refused before anything runs.
  "POST /v1/tenants/:tenant/rules/:id/shadow": { method: "POST", path: "/v1/tenants/tA/rules/nope/shadow", body: { version: 999 }, expect: tenant("rules", 404) },
  "POST /v1/tenants/:tenant/rules/:id/backfill": { method: "POST", path: "/v1/tenants/tA/rules/nope/backfill", body: { version: 999 }, expect: tenant("rules", 404) },
  // A user without events: the rebuild writes an empty state and reports it.
  "POST /v1/tenants/:tenant/users/:user/rebuild": { method: "POST", path: "/v1/tenants/tA/users/nobody/rebuild", body: {}, expect: admin(200) },
  "GET /v1/history/reports": { method: "GET", path: "/v1/history/reports", expect: admin(200) },
  "GET /v1/history/reports/:id": { method: "GET", path: "/v1/history/reports/nope", expect: admin(404) },
  "DELETE /v1/history/reports/:id": { method: "DELETE", path: "/v1/history/reports/nope", expect: admin(404) },
};

describe("HTTP API keys and scopes", () => {
  let nats: TestNats;
  let engine: Engine;
  const keys = {} as Record<Caller, string | undefined>;
  const call = (path: string, init: RequestInit & { key?: string | undefined; json?: unknown } = {}) => {
    const headers: Record<string, string> = {};
    if (init.key) headers.authorization = `Bearer ${init.key}`;
    if (init.json !== undefined) headers["content-type"] = "application/json";
    return fetch(`${engine.httpUrl}${path}`, { ...init, headers, ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : {}) });
  };
  const newKey = async (body: unknown) => {
    const res = await call("/v1/keys", { method: "POST", key: keys.admin, json: body });
    expect(res.status).toBe(201);
    return (await res.json()) as { key: string; id: string; prefix?: string };
  };

  beforeAll(async () => {
    nats = await startTestNats(4);
    // The matrix alone makes more unauthenticated requests than one address may fail in a minute by default.
    engine = await startTestEngine(nats.url, { http: { rateLimit: { perKey: 0, perTenant: 0, authFailures: 1000 } } });
    keys.none = undefined;
    keys.admin = adminKey(engine.config.dataDir);
    keys["A:events"] = (await newKey({ tenant: "tA", scopes: ["events:write"], name: "producer" })).key;
    keys["A:read"] = (await newKey({ tenant: "tA", scopes: ["read"] })).key;
    keys["A:rules"] = (await newKey({ tenant: "tA", scopes: ["rules:write"] })).key;
    keys["A:webhooks"] = (await newKey({ tenant: "tA", scopes: ["webhooks"] })).key;
    keys["B:all"] = (await newKey({ tenant: "tB", scopes: ["events:write", "read", "rules:write", "webhooks"] })).key;
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });

  it("gives every route × caller its exact status, and every route has a row", async () => {
    const routes = declaredRoutes(engine.api!);
    expect(routes.length).toBeGreaterThan(10);
    const missing = routes.filter((r) => !MATRIX[`${r.method === "HEAD" ? "GET" : r.method} ${r.url}`]).map((r) => `${r.method} ${r.url}`);
    expect(missing, "routes without a row in the matrix").toEqual([]);
    const got: string[] = [];
    const want: string[] = [];
    for (const r of routes) {
      const row = MATRIX[`${r.method === "HEAD" ? "GET" : r.method} ${r.url}`]!;
      for (const c of CALLERS) {
        const res = await call(row.path, { method: r.method, key: keys[c], ...(row.body !== undefined ? { json: row.body } : {}) });
        got.push(`${r.method} ${row.path} as ${c}: ${res.status}`);
        want.push(`${r.method} ${row.path} as ${c}: ${row.expect[c]}`);
        if (r.method !== "HEAD" && res.status >= 400) {
          const body = (await res.json()) as { error?: unknown; message?: unknown };
          expect(typeof body.error === "string" && typeof body.message === "string", `${r.method} ${row.path} as ${c}: error body`).toBe(true);
        }
      }
    }
    expect(got).toEqual(want);
  });

  it("documents every route in /openapi.json, with its key requirement and error answers, and serves a browsable page", async () => {
    const doc = (await (await call("/openapi.json")).json()) as { openapi: string; paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, unknown> }>> };
    expect(doc.openapi).toBe("3.1.0");
    const api = declaredRoutes(engine.api!).filter((r) => r.method !== "HEAD" && !r.url.startsWith("/docs"));
    for (const r of api) {
      const path = r.url.replace(/:(\w+)/g, "{$1}");
      const op = doc.paths[path]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${r.url} in the OpenAPI document`).toBeDefined();
      const codes = Object.keys(op!.responses);
      expect(codes, `${r.method} ${r.url}`).toEqual(expect.arrayContaining(["500", "503"]));
      if ("public" in r.access) expect(op!.security, `${r.method} ${r.url}`).toEqual([]);
      else {
        expect(codes, `${r.method} ${r.url}`).toEqual(expect.arrayContaining(["401", "403", "429"]));
        expect(op!.security, `${r.method} ${r.url}`).toEqual([{ apiKey: [] }]);
      }
      if (r.method === "POST" || r.method === "PUT") expect(codes, `${r.method} ${r.url}`).toEqual(expect.arrayContaining(["400", "413", "415"]));
    }
    const page = await call("/docs/");
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("swagger");
  });

  it("answers 400 on every :tenant route for a tenant that is not a tenant id, once the key may act there", async () => {
    const routes = declaredRoutes(engine.api!).filter((r) => r.method !== "HEAD" && "scope" in r.access && r.access.tenant === "param");
    expect(routes.length).toBeGreaterThan(10);
    for (const r of routes) {
      const row = MATRIX[`${r.method} ${r.url}`]!;
      const path = row.path.replace("/v1/tenants/tA", "/v1/tenants/bad.tenant");
      expect(path, `${r.method} ${r.url}`).not.toBe(row.path);
      const res = await call(path, { method: r.method, key: keys.admin, ...(row.body !== undefined ? { json: row.body } : {}) });
      expect(res.status, `${r.method} ${path}`).toBe(400);
      expect(await res.json(), `${r.method} ${path}`).toEqual({ error: "bad_request", message: 'tenant id "bad.tenant" is not valid' });
      // A key of another tenant is refused before its path is looked at.
      expect((await call(path, { method: r.method, key: keys["B:all"], ...(row.body !== undefined ? { json: row.body } : {}) })).status, `${r.method} ${path} as B`).toBe(403);
    }
  });

  it("answers 401 with a Bearer challenge for a missing, malformed, unknown or tampered key", async () => {
    const good = keys["A:read"]!;
    const tampered = good.slice(0, -1) + (good.endsWith("A") ? "B" : "A");
    for (const auth of [undefined, "Basic abc", "Bearer nope", `Bearer achd_000000000000_${"x".repeat(43)}`, `Bearer ${tampered}`]) {
      const res = await fetch(`${engine.httpUrl}/v1/tenants/tA/rules`, { headers: auth ? { authorization: auth } : {} });
      expect(res.status, String(auth)).toBe(401);
      expect(res.headers.get("www-authenticate")).toContain("Bearer");
    }
  });

  it("refuses a tenant key's batch with one event of another tenant as a whole, publishing nothing", async () => {
    const before = (await nats.jsm.streams.info(Streams.Events)).state.messages;
    const res = await call("/v1/events", { method: "POST", key: keys["A:events"], json: [ev("tA", "u1", "lesson.completed"), ev("tB", "u1", "lesson.completed")] });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { message: string }).message).toContain("event 1 is for tenant \"tB\"");
    expect((await nats.jsm.streams.info(Streams.Events)).state.messages).toBe(before);
    const ok = await call("/v1/events", { method: "POST", key: keys["A:events"], json: [ev("tA", "u1", "lesson.completed")] });
    expect(ok.status).toBe(200);
  });

  it("shows a key once, lists it by prefix with creation and last use, and revokes it in every API process within a second", async () => {
    const created = await newKey({ tenant: "tA", scopes: ["read"], name: "dashboard" });
    expect(created.key).toMatch(/^achd_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    // A second API process on the same server.
    const other = await startTestEngine(nats.url, { worker: { enabled: false } });
    try {
      const via = (e: Engine) => fetch(`${e.httpUrl}/v1/tenants/tA/rules`, { headers: { authorization: `Bearer ${created.key}` } });
      expect((await via(engine)).status).toBe(200);
      expect((await via(other)).status).toBe(200);
      const listed = (await (await call("/v1/keys?tenant=tA", { key: keys.admin })).json()) as { keys: Record<string, unknown>[] };
      const mine = listed.keys.find((k) => k.id === created.id)!;
      expect(mine).toMatchObject({ prefix: `achd_${created.id}_…`, tenant: "tA", scopes: ["read"], name: "dashboard" });
      expect(typeof mine.created_at).toBe("string");
      expect(JSON.stringify(listed)).not.toContain(created.key.slice("achd_".length + 13));
      expect(mine).not.toHaveProperty("hash");
      await eventually(async () => {
        const again = (await (await call("/v1/keys?tenant=tA", { key: keys.admin })).json()) as { keys: Record<string, unknown>[] };
        return again.keys.find((k) => k.id === created.id)?.last_used_at ? true : undefined;
      }, 5000, "last use recorded");

      const revoked = await call(`/v1/keys/${created.id}`, { method: "DELETE", key: keys.admin });
      expect(revoked.status).toBe(200);
      const t0 = Date.now();
      await eventually(async () => ((await via(other)).status === 401 ? true : undefined), 1000, "revocation reaching the other API process");
      expect(Date.now() - t0).toBeLessThan(1000);
      expect((await via(engine)).status).toBe(401);
    } finally {
      await other.stop();
    }
  });

  it("makes, lists and revokes keys from the command line, which the API honours", async () => {
    const env = { ...process.env, NATS_URL: nats.url, ACH_CONFIG: fixture("achd.test.yaml"), LOG_LEVEL: "silent" };
    const achd = (...args: string[]) => promisify(execFile)(process.execPath, [BIN, "keys", ...args], { env });
    const made = await achd("create", "--tenant", "tA", "--scope", "read", "--name", "cli");
    const key = made.stdout.trim();
    expect(key).toMatch(/^achd_[0-9a-f]{12}_/);
    expect(made.stderr).toContain("shown this once");
    expect((await call("/v1/tenants/tA/rules", { key })).status).toBe(200);
    const id = key.slice(5, 17);
    const listed = (await achd("list", "--tenant", "tA")).stdout;
    expect(listed).toContain(`achd_${id}_…`);
    expect(listed).not.toContain(key.slice(18));
    const usage = await achd("create", "--tenant", "tA").catch((e: { code: number; stderr: string }) => e);
    expect(usage).toMatchObject({ code: 2 });
    expect((usage as { stderr: string }).stderr).toContain("scopes: give at least one");
    await achd("revoke", id);
    await eventually(async () => ((await call("/v1/tenants/tA/rules", { key })).status === 401 ? true : undefined), 1000, "the revoked key refused");
  });

  it("registers a tenant's NATS credential over the API, showing its seed once and storing only the public key", async () => {
    const res = await call("/v1/tenants", { method: "POST", key: keys.admin, json: { tenant: "tC" } });
    expect(res.status).toBe(201);
    const issued = (await res.json()) as { tenant: string; nkey: string; seed: string; inbox_prefix: string };
    expect(issued).toMatchObject({ tenant: "tC", inbox_prefix: "_INBOX_tC" });
    expect(issued.seed).toMatch(/^SU[A-Z2-7]+$/);
    expect(issued.nkey).toMatch(/^U[A-Z2-7]+$/);
    expect((await call("/v1/tenants", { method: "POST", key: keys.admin, json: { tenant: "tC" } })).status).toBe(409);
    const listed = await (await call("/v1/tenants", { key: keys.admin })).text();
    expect(listed).toContain(issued.nkey);
    expect(listed).not.toContain(issued.seed);
    const stored = await (await new Kvm(nats.nc).open(Buckets.Tenants)).get("tC");
    expect(new TextDecoder().decode(stored!.value)).not.toContain(issued.seed);
    expect((await call("/v1/tenants/tC", { method: "DELETE", key: keys.admin })).status).toBe(200);
    expect((await call("/v1/tenants/tC", { method: "DELETE", key: keys.admin })).status).toBe(404);
  });

  it("refuses key requests that mix admin and tenant, or name unknown scopes, with the field named", async () => {
    for (const [body, field] of [
      [{ tenant: "tA", scopes: ["admin"] }, "tenant"],
      [{ scopes: ["read"] }, "tenant"],
      [{ tenant: "tA", scopes: ["read", "delete-everything"] }, "scopes"],
      [{ tenant: "tA", scopes: [] }, "scopes"],
      [{ tenant: "bad tenant", scopes: ["read"] }, "tenant"],
    ] as const) {
      const res = await call("/v1/keys", { method: "POST", key: keys.admin, json: body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { message: string }).message.startsWith(`${field}:`)).toBe(true);
    }
  });

  it("keeps no key in plain text: not in any bucket, stream or file the engine wrote, and the admin key file is 0600", async () => {
    const file = join(engine.config.dataDir, "auth", "admin.key");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const secrets = Object.values(keys).filter((k): k is string => !!k).map((k) => k.slice("achd_".length + 13));
    const kvm = new Kvm(nats.nc);
    const seen: string[] = [];
    for (const b of Object.values(Buckets)) {
      const kv = await kvm.open(b);
      for await (const k of await kv.keys()) {
        const e = await kv.get(k);
        if (e) seen.push(k, new TextDecoder().decode(e.value));
      }
    }
    for (const s of Object.values(Streams)) {
      const info = await nats.jsm.streams.info(s);
      for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
        const m = await nats.jsm.streams.getMessage(s, { seq }).catch(() => null);
        if (m) seen.push(m.subject, new TextDecoder().decode(m.data), JSON.stringify([...(m.header ?? [])]));
      }
    }
    const files = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? files(join(dir, d.name)) : [join(dir, d.name)]));
    for (const f of files(engine.config.dataDir)) if (f !== file) seen.push(readFileSync(f, "latin1"));
    const all = seen.join("\n");
    expect(all.length).toBeGreaterThan(1000);
    for (const s of secrets) expect(all.includes(s), `${s} at …${all.slice(Math.max(0, all.indexOf(s) - 300), all.indexOf(s) + 50)}`).toBe(false);
  });
});

describe("HTTP limits", () => {
  let nats: TestNats;
  let engine: Engine;
  beforeAll(async () => {
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { http: { maxBatch: 5, requestTimeout: "1s", rateLimit: { perKey: 5, perTenant: 0, window: "10s" }, quota: { eventsPerSecond: 0.5, burst: 5 } } });
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.cleanup();
  });
  const post = (body: unknown, key = adminKey(engine.config.dataDir)) =>
    fetch(`${engine.httpUrl}/v1/events`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key}` }, body: JSON.stringify(body) });

  it("cuts off a client that sends headers and never its body within seconds", async () => {
    const { port, hostname } = new URL(engine.httpUrl!);
    const t0 = Date.now();
    const answer = await new Promise<string>((resolve, reject) => {
      const s = tcp(Number(port), hostname, () => {
        const auth = `Authorization: Bearer ${adminKey(engine.config.dataDir)}`;
        s.write(`POST /v1/events HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"ev`);
      });
      let got = "";
      s.on("data", (d) => (got += d.toString()));
      s.on("close", () => resolve(got));
      s.on("error", reject);
      setTimeout(() => reject(new Error("still open after 8 s")), 8000);
    });
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(answer.startsWith("HTTP/1.1 408"), answer).toBe(true);
  });

  it("takes a tenant's quota for a whole request or not at all: 429 with Retry-After, and accepted events are exactly those answered accepted", async () => {
    const before = (await nats.jsm.streams.info(Streams.Events)).state.messages;
    const first = await post([1, 2, 3, 4].map(() => ev("quota", "u1", "lesson.completed")));
    expect(first.status).toBe(200);
    expect(((await first.json()) as { accepted: number }).accepted).toBe(4);
    // One token left: a batch of two does not fit, and nothing of it is published.
    const over = await post([ev("quota", "u1", "lesson.completed"), ev("quota", "u2", "lesson.completed")]);
    expect(over.status).toBe(429);
    expect(Number(over.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(((await over.json()) as { error: string; message: string }).message).toContain("tenant quota is over its event quota");
    expect((await nats.jsm.streams.info(Streams.Events)).state.messages).toBe(before + 4);
    // Another tenant has its own bucket.
    expect((await post([ev("other", "u1", "lesson.completed")])).status).toBe(200);
  });

  it("limits requests per key: 429 with Retry-After and the error shape", async () => {
    const res: number[] = [];
    for (let i = 0; i < 8; i++) res.push((await fetch(`${engine.httpUrl}/v1/rules`, { headers: { authorization: `Bearer ${adminKey(engine.config.dataDir)}` } })).status);
    expect(res.filter((s) => s === 429).length).toBeGreaterThan(0);
    const last = await fetch(`${engine.httpUrl}/v1/rules`, { headers: { authorization: `Bearer ${adminKey(engine.config.dataDir)}` } });
    expect(last.status).toBe(429);
    expect(last.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await last.json()).toMatchObject({ error: "too_many_requests" });
  });

});

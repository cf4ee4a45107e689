/**
 * The README's browser example, in a real browser: a backend with a tenant
 * key asks for a stream token bound to one user, and the page opens an
 * `EventSource` with it (no key in the browser). The page gets that user's
 * unlocks live, with their stream positions as `lastEventId`, and nobody
 * else's.
 */
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

const CHROMIUM = process.env.ACH_CHROMIUM ?? "/usr/bin/chromium";

describe("unlocks in a browser's EventSource", () => {
  let nats: TestNats;
  let engine: Engine;
  let browser: Browser;
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: bash scripts/ensure-test-tool.sh chromium, or set ACH_CHROMIUM`);
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
  });
  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    await nats?.cleanup();
  });

  it("receives one user's unlocks through a stream token, and nothing else", async () => {
    const key = ((await (await apiFetch(engine, "/v1/keys", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tenant: "globex", scopes: ["read"] }) })).json()) as { key: string }).key;
    // The product's backend: a token for user b-1, for the browser.
    const res = await fetch(`${engine.httpUrl}/v1/tenants/globex/unlocks/stream-token`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ user: "b-1", ttl_seconds: 600 }) });
    expect(res.status).toBe(201);
    const { stream } = (await res.json()) as { token: string; stream: string };

    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${engine.httpUrl}/healthz`);
    // In the page (no DOM types here: the browser's globals, described as far as used).
    type Got = { id: string; user: string; achievement: string };
    type Page = { got: Got[]; opened?: boolean; EventSource: new (url: string) => { onopen: () => void; addEventListener(type: string, fn: (e: { data: string; lastEventId: string }) => void): void } };
    await page.evaluate((url) => {
      const w = globalThis as unknown as Page;
      w.got = [];
      const es = new w.EventSource(url);
      es.onopen = () => (w.opened = true);
      es.addEventListener("unlock", (e) => {
        const u = JSON.parse(e.data) as { user_id: string; achievement_id: string };
        w.got.push({ id: e.lastEventId, user: u.user_id, achievement: u.achievement_id });
      });
    }, stream);
    const got = () => page.evaluate(() => (globalThis as unknown as Page).got);
    await eventually(() => page.evaluate(() => (globalThis as unknown as Page).opened || undefined), 10_000, "the EventSource open");
    await publishAll(nats.js, [ev("globex", "b-1", "lesson.completed"), ev("globex", "b-2", "lesson.completed"), ev("acme", "b-1", "lesson.completed")]);
    const first = await eventually(async () => ((await got()).length >= 1 ? got() : undefined), 20_000, "b-1's unlock in the page");
    await new Promise((r) => setTimeout(r, 700));
    const all = await got();
    expect(all).toEqual([{ id: first[0]!.id, user: "b-1", achievement: "first-lesson" }]);
    expect(Number(all[0]!.id)).toBeGreaterThan(0);
    expect(errors).toEqual([]);

    // The token opens nothing else: not another user's stream, not another tenant's, not once tampered with.
    const token = new URL(stream, engine.httpUrl).searchParams.get("token")!;
    expect((await fetch(`${engine.httpUrl}/v1/tenants/globex/unlocks/stream?token=${token}&user=b-2`)).status).toBe(403);
    expect((await fetch(`${engine.httpUrl}/v1/tenants/acme/unlocks/stream?token=${token}`)).status).toBe(403);
    expect((await fetch(`${engine.httpUrl}/v1/tenants/globex/unlocks/stream?token=${token.slice(0, -2)}xx`)).status).toBe(401);
    expect((await fetch(`${engine.httpUrl}/v1/tenants/globex/users/b-1/achievements?token=${token}`)).status).toBe(401);
  });
});

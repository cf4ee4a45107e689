/**
 * The operations dashboard in a real browser (Debian's chromium driven by
 * playwright-core) against a real engine: sign in, watch known events show
 * up as the right numbers, the unlock feed, the partition table and the DLQ,
 * then correct and redrive a dead letter from the page and see it applied,
 * and the history runs listed with their numbers. No console errors. Leaves a screenshot in ACH_ARTIFACTS (default: the temp
 * folder's achd-test-artifacts/), and in docs/ with ACH_UPDATE_SCREENSHOT=1.
 */
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { eventMsgId, eventSubject } from "../../src/events/mod.ts";
import { Streams } from "../../src/nats/mod.ts";
import { deadLetterCounts } from "../../src/pipeline/mod.ts";
import { adminKey, apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, generate, publishAll, publishRaw } from "../helpers/stream.ts";

const CHROMIUM = process.env.ACH_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.ACH_ARTIFACTS ?? join(tmpdir(), "achd-test-artifacts");
const DOCS_SCREENSHOT = fileURLToPath(new URL("../../docs/dashboard.png", import.meta.url));

type Dashboard = {
  totals: Record<"received" | "applied" | "duplicates" | "rejected" | "unlocks" | "late", number>;
  partitions: { partition: number; owner: string | null; pending: number | null; ack_pending: number | null }[];
};

describe("the dashboard in a browser", () => {
  let nats: TestNats;
  let engine: Engine;
  let browser: Browser;
  let page: Page;
  /** Console errors and uncaught exceptions of the page, after sign-in. */
  const errors: string[] = [];
  let signedIn = false;

  const dashboard = async () => (await (await apiFetch(engine, "/v1/dashboard")).json()) as Dashboard;
  const text = async (selector: string) => ((await page.locator(selector).first().textContent()) ?? "").trim();
  /** Waits until the page shows `want` at `selector` (it polls every second). */
  const shows = (selector: string, want: string, timeoutMs = 15_000) =>
    eventually(async () => ((await text(selector)) === want ? true : undefined), timeoutMs, `${selector} to show ${JSON.stringify(want)}`).catch(async (err: Error) => {
      throw new Error(`${err.message}; it shows ${JSON.stringify(await text(selector))}`);
    });

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`no chromium at ${CHROMIUM}: install it (bash scripts/ensure-test-tool.sh chromium, or apt-get install -y chromium) or point ACH_CHROMIUM at one`);
    }
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
    page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    page.on("console", (m) => {
      // Before sign-in the page asks once without a key (auth.mode none needs none): that 401 is expected.
      if (m.type() === "error" && (signedIn || !/status of 401/.test(m.text()))) errors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  });
  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    await nats?.cleanup();
  });

  it("serves the page and its assets as static files, public, with a strict content security policy", async () => {
    const res = await fetch(`${engine.httpUrl}/dashboard`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("content-security-policy")).toMatch(/default-src 'self'.*script-src 'self'/);
    expect(res.headers.get("cache-control")).toBe("no-cache");
    for (const [file, type] of [["app.js", /^text\/javascript/], ["style.css", /^text\/css/], ["uPlot.esm.js", /^text\/javascript/], ["uPlot.min.css", /^text\/css/]] as const) {
      const a = await fetch(`${engine.httpUrl}/dashboard/assets/${file}`);
      expect(a.status, file).toBe(200);
      expect(a.headers.get("content-type"), file).toMatch(type);
    }
    for (const bad of ["index.html", "..%2F..%2Fpackage.json", "%2e%2e%2fapp.js", "nope.js"]) {
      expect((await fetch(`${engine.httpUrl}/dashboard/assets/${bad}`)).status, bad).toBe(404);
    }
  });

  it("signs in, shows known events as numbers, unlocks, partitions and the DLQ, and redrives a corrected dead letter", async () => {
    await page.goto(`${engine.httpUrl}/dashboard`);
    // auth.mode keys: the keyless request is refused, so the page asks for a key.
    await page.locator("#signin").waitFor({ state: "visible" });
    await page.fill("#signin-key", "achd_000000000000_not-a-key-not-a-key-not-a-key-not-a-key-xx");
    await page.click("#signin-form button[type=submit]");
    await page.locator("#signin-error").waitFor({ state: "visible" });
    expect(await text("#signin-error")).toMatch(/not valid/);
    signedIn = true;
    errors.length = 0; // the wrong key's 401 too was on purpose
    await page.fill("#signin-key", adminKey(engine.config.dataDir));
    await page.click("#signin-form button[type=submit]");
    await page.locator("#overview").waitFor({ state: "visible" });

    // Three valid events (two unlock first-lesson) and one invalid, which the worker dead-letters.
    await publishAll(nats.js, [
      ev("acme", "dash-user", "lesson.completed", { duration_seconds: 30 }),
      ev("globex", "dash-user", "lesson.completed", { duration_seconds: 30 }),
      ev("acme", "dash-user", "team.invited"),
    ]);
    const bad = { ...ev("acme", "bad-user", "lesson.completed", { duration_seconds: 700 }), occurred_at: "yesterday" };
    await publishRaw(nats.js, eventSubject("acme", "bad-user", "lesson.completed"), JSON.stringify(bad), eventMsgId("acme", "bad-user", bad.event_id));
    const d = await eventually(async () => {
      const x = await dashboard();
      return x.totals.applied === 3 && x.totals.unlocks === 2 && x.totals.rejected === 1 ? x : undefined;
    }, 20_000, "the engine to count the events");

    await shows("#kpi-applied .kpi-value", "3");
    await shows("#kpi-unlocks .kpi-value", "2");
    await shows("#kpi-rejected .kpi-value", "1");
    await shows("#kpi-received .kpi-value", String(d.totals.received));
    await shows("#kpi-dlq .kpi-value", "1");
    // The feed: both unlocks, newest first.
    await eventually(async () => ((await page.locator("#feed li.unlock").count()) === 2 ? true : undefined), 10_000, "two unlocks in the feed");
    const feed = await page.locator("#feed").innerText();
    expect(feed).toContain("first-lesson");
    expect(feed).toContain("acme / dash-user");
    expect(feed).toContain("globex / dash-user");
    // One row per partition, each with the owner the API names, and nothing left to process.
    const rows = page.locator("#partitions tbody tr");
    expect(await rows.count()).toBe(4);
    for (const p of d.partitions) {
      expect(p.owner).toBeTruthy();
      expect(await rows.nth(p.partition).locator("td").nth(1).textContent()).toBe(p.owner);
    }
    await eventually(async () => ((await page.locator("#partitions tbody td.lag").allTextContents()).every((t) => t === "0") ? true : undefined), 10_000, "lag 0 everywhere");
    await shows("#dlq-reasons li .bar-label", "invalid_event");
    expect(await page.locator("#top-achievements li .bar-label").allTextContents()).toEqual(expect.arrayContaining(["first-lesson acme", "first-lesson globex"]));
    expect(await page.locator("#tenants").innerText()).toMatch(/acme[\s\S]*globex|globex[\s\S]*acme/);

    // The console: the dead letter, filtered by reason, opened.
    await page.click(".tab[data-tab=dlq]");
    await page.locator("#dlq-list tbody tr").first().waitFor();
    expect(await page.locator("#dlq-list tbody tr").count()).toBe(1);
    await page.selectOption("#dlq-reason", "invalid_event");
    await eventually(async () => ((await page.locator("#dlq-list tbody tr").count()) === 1 ? true : undefined), 5000, "the reason filter");
    const row = page.locator("#dlq-list tbody tr").first();
    expect(await row.innerText()).toMatch(/invalid_event[\s\S]*acme \/ bad-user[\s\S]*occurred_at/);
    await row.click();
    await page.locator("#dlq-detail").waitFor({ state: "visible" });
    expect(await page.inputValue("#dlq-body")).toContain('"occurred_at": "yesterday"');

    // Declining the confirmation changes nothing.
    page.once("dialog", (dialog) => void dialog.dismiss());
    await page.click("#dlq-redrive");
    await new Promise((r) => setTimeout(r, 500));
    expect(await page.locator("#dlq-result").isVisible()).toBe(false);
    expect(await page.locator("#dlq-list tbody tr").count()).toBe(1);

    // Corrected and confirmed: redriven, gone from the DLQ, applied, and it unlocks.
    await page.fill("#dlq-body", JSON.stringify({ ...bad, occurred_at: "2026-04-13T12:00:00Z" }, null, 2));
    let asked = "";
    page.once("dialog", (dialog) => {
      asked = dialog.message();
      void dialog.accept();
    });
    await page.click("#dlq-redrive-body");
    await eventually(async () => ((await text("#dlq-result")).startsWith("Redriven") ? true : undefined), 10_000, "the redrive result");
    expect(asked).toMatch(/Redrive dead letter #\d+ with the edited body/);
    await page.locator("#dlq-empty").waitFor({ state: "visible" });
    await page.click(".tab[data-tab=overview]");
    await shows("#kpi-applied .kpi-value", "4", 20_000);
    await shows("#kpi-unlocks .kpi-value", "3");
    await shows("#kpi-dlq .kpi-value", "0");
    expect(await page.locator("#feed").innerText()).toContain("acme / bad-user");
    expect(errors).toEqual([]);
  }, 120_000);

  it("lists the DLQ by reason and counts it by reason and tenant", async () => {
    await publishRaw(nats.js, eventSubject("initech", "u1", "lesson.completed"), "{not json");
    await publishRaw(nats.js, eventSubject("initech", "u2", "lesson.completed"), JSON.stringify({ ...ev("initech", "u2", "lesson.completed"), occurred_at: "soon" }));
    const counts = await eventually(async () => {
      const c = await deadLetterCounts(nats.js, (await nats.jsm.streams.info(Streams.Dlq)).state);
      return c.depth === 2 ? c : undefined;
    }, 20_000, "two dead letters");
    expect(counts).toEqual({ depth: 2, by_reason: { bad_json: 1, invalid_event: 1 }, by_tenant: { initech: 2 } });
    const list = async (q: string) => ((await (await apiFetch(engine, `/v1/dlq?${q}`)).json()) as { dead_letters: { reason: string }[] }).dead_letters.map((x) => x.reason);
    expect(await list("reason=bad_json")).toEqual(["bad_json"]);
    expect(await list("tenant=initech&reason=invalid_event")).toEqual(["invalid_event"]);
    expect(await list("reason=too_large")).toEqual([]);
    expect((await apiFetch(engine, "/v1/dlq?reason=Bad%20Reason")).status).toBe(400);
    // A redrive body must be { body: <object> }.
    expect((await apiFetch(engine, "/v1/dlq/1/redrive", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ body: "text" }) })).status).toBe(400);
  });

  it("lists the newest history runs with their numbers: a rebuild and a shadow run", async () => {
    const post = (path: string, body: unknown) => apiFetch(engine, path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect((await post("/v1/tenants/acme/users/dash-user/rebuild", {})).status).toBe(200);
    expect((await post("/v1/tenants/acme/rules/first-lesson/shadow", { version: 1 })).status).toBe(200);
    await page.click(".tab[data-tab=overview]");
    // The panel is read again every 10 s.
    await eventually(async () => ((await page.locator("#history tbody tr").count()) >= 2 ? true : undefined), 20_000, "two history runs listed");
    const rows = await page.locator("#history tbody tr").allInnerTexts();
    expect(rows[0]).toMatch(/shadow[\s\S]*first-lesson v1 · acme[\s\S]*done[\s\S]*0 users gain · 0 lose · 0 move/);
    expect(rows[1]).toMatch(/rebuild[\s\S]*acme \/ dash-user[\s\S]*done[\s\S]*rules changed · 0 delivered/);
    expect(await page.locator("#history-empty").isVisible()).toBe(false);
    expect(errors).toEqual([]);
  }, 60_000);

  it("keeps a screenshot of the page under some traffic", async () => {
    // Twelve seconds of mixed events at a changing rate, some sent twice, so the charts and tables have something to show.
    const events = generate(7, 900, 40, ["acme", "globex", "initech"]);
    let sent = 0;
    for (let i = 0; i < 12; i++) {
      const n = 40 + Math.round(35 * Math.sin(i / 2) + 35);
      const batch = events.slice(sent, sent + n);
      sent += batch.length;
      await publishAll(nats.js, batch);
      if (i % 3 === 0) await publishAll(nats.js, batch.slice(0, 5), { msgId: false });
      await new Promise((r) => setTimeout(r, 1000));
    }
    // Taken while the last events are still being counted: the rates are live.
    await page.click(".tab[data-tab=overview]");
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });
    if (process.env.ACH_UPDATE_SCREENSHOT === "1") await page.screenshot({ path: DOCS_SCREENSHOT, fullPage: true });
    await eventually(async () => ((await dashboard()).partitions.every((p) => p.pending === 0 && p.ack_pending === 0) ? true : undefined), 30_000, "the traffic processed");
    expect(shot.length).toBeGreaterThan(10_000);
    expect(errors).toEqual([]);
  }, 90_000);
});

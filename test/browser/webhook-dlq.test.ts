/**
 * The dashboard's webhook dead letters in a real browser (Debian's chromium
 * driven by playwright-core) against a real engine that delivers webhooks to
 * a local receiver: deliveries the receiver keeps refusing end in the
 * webhook dead-letter list, the page lists them (across tenants, filtered
 * by tenant), shows one, and redelivers it after a confirmation — still
 * failing (502), refused while the webhook is disabled (409), then taken
 * (200: gone from the list, and the receiver has it). No console errors but
 * the 502 and 409 answers the test asks for. Leaves a screenshot in
 * ACH_ARTIFACTS (default: the temp folder's achd-test-artifacts/): webhook-dlq.png
 * with a redelivery still failing, webhook-dlq-empty.png at the end.
 */
import { existsSync, mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { adminKey, apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

const CHROMIUM = process.env.ACH_CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = process.env.ACH_ARTIFACTS ?? join(tmpdir(), "achd-test-artifacts");

type Dead = { seq: number; tenant: string; webhook_id: string; webhook_url: string | null; webhook_enabled: boolean; unlock_id: string; user_id: string; achievement_id: string; attempts: number; last_status: number | null; last_error: string; failed_at: string };

describe("the webhook dead letters in the dashboard", () => {
  let nats: TestNats;
  let engine: Engine;
  let browser: Browser;
  let page: Page;
  let receiver: Server;
  let url = "";
  /** What the receiver answers now. */
  let answer = 500;
  /** webhook-id of each request the receiver answered 200. */
  const accepted: string[] = [];
  const errors: string[] = [];

  const api = (path: string, init: RequestInit = {}) => apiFetch(engine, path, init);
  const json = (body: unknown): RequestInit => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const dead = async (q = "") => (await ((await api(`/v1/webhooks/dead${q}`)).json()) as { dead_letters: Dead[]; next_from: number | null });
  const text = async (selector: string) => ((await page.locator(selector).first().textContent()) ?? "").trim();
  const rowCount = (n: number, what: string) => eventually(async () => ((await page.locator("#whd-list tbody tr").count()) === n ? true : undefined), 10_000, what);
  /** Clicks Redeliver and answers the confirmation; returns what it asked. */
  const redeliver = async (accept: boolean) => {
    let asked = "";
    page.once("dialog", (dialog) => {
      asked = dialog.message();
      void (accept ? dialog.accept() : dialog.dismiss());
    });
    await page.click("#whd-redeliver");
    await eventually(() => (asked ? true : undefined), 5000, "the confirmation");
    return asked;
  };
  const resultStarts = (prefix: string) => eventually(async () => ((await text("#whd-result")).startsWith(prefix) ? true : undefined), 10_000, `the result "${prefix}…"`).catch(async (err: Error) => {
    throw new Error(`${err.message}; it shows ${JSON.stringify(await text("#whd-result"))}`);
  });

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`no chromium at ${CHROMIUM}: install it (bash scripts/ensure-test-tool.sh chromium, or apt-get install -y chromium) or point ACH_CHROMIUM at one`);
    }
    receiver = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.statusCode = answer;
        res.end(answer === 200 ? "ok" : "receiver down for the test");
        if (answer === 200) accepted.push(String(req.headers["webhook-id"]));
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`;
    nats = await startTestNats(4);
    // This engine delivers webhooks too; a delivery is given up on after a second of 5xx answers.
    engine = await startTestEngine(nats.url, { webhooks: { allowPrivate: true, retryFor: "1s", timeout: "1s" } });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on("console", (m) => {
      // The browser logs every answer that is not a 2xx; the 502 and 409 of a redelivery are asked for below.
      if (m.type() === "error" && !(/status of (502|409)/.test(m.text()) && /\/redeliver$/.test(m.location().url))) errors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  });
  afterAll(async () => {
    await browser?.close();
    await engine?.stop();
    await nats?.cleanup();
    receiver?.closeAllConnections();
    await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve(undefined)));
  });

  it("lists deliveries given up on across tenants, and redelivers one after a confirmation: 502, 409, then 200", async () => {
    // Two tenants' webhooks at the receiver, which answers 500: each first lesson unlocks, and each delivery ends as a dead letter.
    const hooks: Record<string, string> = {};
    for (const tenant of ["acme", "globex"]) {
      const res = await api(`/v1/tenants/${tenant}/webhooks`, json({ url }));
      expect(res.status).toBe(201);
      hooks[tenant] = ((await res.json()) as { id: string }).id;
    }
    await publishAll(nats.js, [ev("acme", "hook-user", "lesson.completed", { duration_seconds: 30 }), ev("globex", "hook-user", "lesson.completed", { duration_seconds: 30 })]);
    const all = await eventually(async () => {
      const d = await dead();
      return d.dead_letters.length === 2 ? d : undefined;
    }, 30_000, "two webhook dead letters");
    expect(all.next_from).toBeNull();
    for (const d of all.dead_letters) {
      expect(d).toMatchObject({ webhook_id: hooks[d.tenant], webhook_url: url, webhook_enabled: true, user_id: "hook-user", achievement_id: "first-lesson", last_status: 500 });
      expect(d.attempts).toBeGreaterThan(1);
    }
    // The admin's list: by tenant, paged, bounded.
    expect((await dead("?tenant=globex")).dead_letters.map((d) => d.tenant)).toEqual(["globex"]);
    expect((await dead("?tenant=initech")).dead_letters).toEqual([]);
    const first = await dead("?limit=1");
    expect(first.dead_letters).toHaveLength(1);
    expect((await dead(`?from=${first.next_from}`)).dead_letters.map((d) => d.seq)).toEqual([all.dead_letters[1]!.seq]);
    for (const q of ["?tenant=bad.tenant", "?limit=0", "?limit=1001", "?from=x"]) expect((await api(`/v1/webhooks/dead${q}`)).status, q).toBe(400);

    // The page, signed in by the link's fragment: Dead letters → Webhook deliveries.
    await page.goto(`${engine.httpUrl}/dashboard#key=${encodeURIComponent(adminKey(engine.config.dataDir))}`);
    await page.locator("#overview").waitFor({ state: "visible" });
    await page.click(".tab[data-tab=dlq]");
    await page.click("#dlq-kind .seg[data-kind=webhooks]");
    await rowCount(2, "two rows");
    expect(await page.locator("#dlq-list").isVisible()).toBe(false);
    expect(await text("#dlq-kind-webhooks")).toBe("2");
    // Oldest first, as they failed.
    const rows = await page.locator("#whd-list tbody tr").allInnerTexts();
    expect(rows.map((r) => /^(\d+)/.exec(r)?.[1])).toEqual(all.dead_letters.map((d) => String(d.seq)));
    for (const [i, d] of all.dead_letters.entries()) {
      expect(rows[i]).toMatch(new RegExp(`${d.tenant} / hook-user[\\s\\S]*first-lesson[\\s\\S]*${d.webhook_id}[\\s\\S]*127\\.0\\.0\\.1[\\s\\S]*${d.attempts}[\\s\\S]*500`));
    }

    // Filtered by tenant.
    await page.fill("#whd-tenant", "acme");
    await page.click("#whd-filter button[type=submit]");
    await rowCount(1, "acme's row alone");
    const acme = all.dead_letters.find((d) => d.tenant === "acme")!;
    expect(await page.locator("#whd-list tbody tr").first().getAttribute("data-seq")).toBe(String(acme.seq));

    // Opened: its details.
    await page.locator("#whd-list tbody tr").first().click();
    await page.locator("#whd-detail").waitFor({ state: "visible" });
    expect(await text("#whd-detail-seq")).toBe(`#${acme.seq}`);
    const meta = await page.locator("#whd-meta").innerText();
    for (const want of [url, hooks.acme!, acme.unlock_id, "first-lesson", "enabled", String(acme.attempts)]) expect(meta).toContain(want);

    // Declined: nothing is sent.
    expect(await redeliver(false)).toMatch(new RegExp(`Redeliver webhook dead letter #${acme.seq} \\(first-lesson of acme / hook-user\\) to ${url.replace(/[.]/g, "\\.")}`));
    await new Promise((r) => setTimeout(r, 300));
    expect(await page.locator("#whd-result").isVisible()).toBe(false);

    // The receiver still answers 500: 502, and it stays.
    await redeliver(true);
    await resultStarts("Still failing");
    expect(await text("#whd-result")).toMatch(/answered 500; the dead letter stays/);
    await rowCount(1, "the letter still listed");
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = await page.screenshot({ path: join(ARTIFACTS, "webhook-dlq.png"), fullPage: true });
    expect(shot.length).toBeGreaterThan(10_000);

    // The webhook disabled: 409, said so.
    expect((await api(`/v1/tenants/acme/webhooks/${hooks.acme}`, { ...json({ enabled: false }), method: "PATCH" })).status).toBe(200);
    await page.click("#whd-filter button[type=submit]");
    await eventually(async () => ((await page.locator("#whd-list tbody tr .off").count()) === 1 ? true : undefined), 10_000, "the row marked disabled");
    await page.locator("#whd-list tbody tr").first().click();
    expect(await page.locator("#whd-meta").innerText()).toMatch(/disabled/);
    await redeliver(true);
    await resultStarts("Not sent: the webhook is disabled");
    expect(await page.locator("#whd-result").getAttribute("class")).toBe("result warn");

    // Enabled again, and the receiver takes it: 200, gone from the list, received once with its unlock id.
    expect((await api(`/v1/tenants/acme/webhooks/${hooks.acme}`, { ...json({ enabled: true }), method: "PATCH" })).status).toBe(200);
    answer = 200;
    await page.click("#whd-filter button[type=submit]");
    await eventually(async () => ((await page.locator("#whd-list tbody tr .off").count()) === 0 ? true : undefined), 10_000, "the row enabled again");
    await page.locator("#whd-list tbody tr").first().click();
    await redeliver(true);
    await resultStarts("Redelivered: the receiver answered 200");
    await page.locator("#whd-empty").waitFor({ state: "visible" });
    expect(await page.locator("#whd-redeliver").isDisabled()).toBe(true);
    expect(accepted).toEqual([acme.unlock_id]);

    // Every tenant again: globex's is left; redelivered too, the list is empty.
    await page.fill("#whd-tenant", "");
    await page.click("#whd-filter button[type=submit]");
    await rowCount(1, "globex's row");
    await page.locator("#whd-list tbody tr").first().click();
    await redeliver(true);
    await resultStarts("Redelivered");
    await page.locator("#whd-empty").waitFor({ state: "visible" });
    expect(await rowCount(0, "no rows")).toBe(true);
    expect((await dead()).dead_letters).toEqual([]);
    expect(accepted.sort()).toEqual(all.dead_letters.map((d) => d.unlock_id).sort());

    await page.screenshot({ path: join(ARTIFACTS, "webhook-dlq-empty.png"), fullPage: true });
    expect(errors).toEqual([]);
  }, 120_000);
});

/**
 * Signed webhooks against real local receivers: every unlock delivered at
 * least once through injected faults (5xx, 429 with Retry-After, slow
 * answers past the timeout, connection resets), every signature verified
 * with the `standardwebhooks` library, each unlock counted once by its
 * webhook-id, each user's unlocks in order; the delivering process killed
 * with SIGKILL mid-stream and replaced; permanent failure into the webhook
 * dead-letter list, auto-disable, redelivery; a disabled webhook gets
 * nothing; private addresses refused at registration and at delivery.
 *
 * Delivery runs in a child process (`achd worker` with workers off: only
 * the webhook delivery), so that it can be killed; the in-process engine
 * evaluates events and serves the API, and does not deliver webhooks.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Kvm } from "@nats-io/kv";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine.ts";
import { Buckets, Streams } from "../../src/nats/mod.ts";
import { backoff, isPrivateAddress, parseRetryAfter, retryCap, sendWebhook, signedHeaders, WEBHOOK_LEASE_KEY } from "../../src/notify/webhooks/mod.ts";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { apiFetch, eventually, startTestEngine } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll, storedUnlocks } from "../helpers/stream.ts";

const BIN = fileURLToPath(new URL("../../bin/achd.js", import.meta.url));

/** What a receiver does with a request: answer 200, or a fault. */
type Answer = { status: number; retryAfter?: string } | "slow" | "reset";

type Received = { id: string; body: string; headers: Record<string, string>; answered: "ok" | "fault" };

/** A local receiver on 127.0.0.1 that records every request and answers as `plan` says. */
type Receiver = {
  url: string;
  requests: Received[];
  /** webhook-id → how many times it was accepted (answered 200 in time). */
  accepted: Map<string, number>;
  /** Each user's webhook-ids in the order they were first accepted. */
  firstByUser: Map<string, string[]>;
  plan: (id: string, attempt: number, user: string) => Answer;
  delayMs: number;
  close(): Promise<void>;
};

async function startReceiver(plan: Receiver["plan"] = () => ({ status: 200 })): Promise<Receiver> {
  const attempts = new Map<string, number>();
  const r: Receiver = { url: "", requests: [], accepted: new Map(), firstByUser: new Map(), plan, delayMs: 0, close: async () => {} };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const id = String(req.headers["webhook-id"]);
      const n = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, n);
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      const answer = r.plan(id, n, (JSON.parse(body) as { user_id: string }).user_id);
      const rec: Received = { id, body, headers, answered: "fault" };
      r.requests.push(rec);
      if (answer === "reset") return req.socket.destroy();
      if (answer === "slow") {
        // Answers after the engine's timeout (1 s): the engine has given up by then.
        setTimeout(() => res.writableEnded || res.destroyed ? undefined : res.end("late"), 1500).unref();
        return;
      }
      setTimeout(() => {
        if (answer.retryAfter) res.setHeader("retry-after", answer.retryAfter);
        res.statusCode = answer.status;
        res.end(answer.status === 200 ? "ok" : "no");
        if (answer.status !== 200) return;
        rec.answered = "ok";
        const seen = r.accepted.get(id) ?? 0;
        r.accepted.set(id, seen + 1);
        if (seen === 0) {
          const user = (JSON.parse(body) as { user_id: string }).user_id;
          r.firstByUser.set(user, [...(r.firstByUser.get(user) ?? []), id]);
        }
      }, r.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  r.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hooks`;
  r.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}

/** A deterministic fault plan: by the unlock id's hash, a first (and some a second) attempt fails in one of the ways a receiver fails. */
function faulty(id: string, attempt: number): Answer {
  const h = createHash("sha256").update(id).digest()[0]!;
  const faults: Answer[] = [{ status: 500 }, { status: 429, retryAfter: "1" }, "slow", "reset", { status: 503 }];
  if (attempt === 1 && h % 8 < faults.length) return faults[h % 8]!;
  if (attempt === 2 && h % 16 === 0) return { status: 502 };
  return { status: 200 };
}

/** Five long lessons: first-lesson, long-lessons, five-lessons — three unlocks per user, in that order. */
function lessons(tenant: string, users: string[]): ReturnType<typeof ev>[] {
  return users.flatMap((u) => Array.from({ length: 5 }, () => ev(tenant, u, "lesson.completed", { duration_seconds: 700 })));
}

describe("webhook outbound rules", () => {
  it("classifies addresses: loopback, private, link-local, unspecified and mapped ones refused, public ones taken", () => {
    for (const a of ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "::1", "::", "fd12::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "not-an-ip"]) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]) expect(isPrivateAddress(a), a).toBe(false);
  });

  it("backs off exponentially with jitter up to a cap, and reads Retry-After in seconds or as a date", () => {
    const day = 86_400_000;
    expect(retryCap(day)).toBe(3_600_000);
    expect(retryCap(4000)).toBe(1000);
    expect(backoff(1, day, () => 1)).toBe(500);
    expect(backoff(1, day, () => 0)).toBe(250);
    expect(backoff(4, day, () => 1)).toBe(4000);
    expect(backoff(40, day, () => 1)).toBe(3_600_000);
    expect(parseRetryAfter("7")).toBe(7000);
    expect(parseRetryAfter(new Date(Date.now() + 60_000).toUTCString())).toBeGreaterThan(55_000);
    expect(parseRetryAfter("soon")).toBeUndefined();
  });
});

describe("webhooks", () => {
  let nats: TestNats;
  let engine: Engine;
  let strict: Engine;
  let child: ChildEngine | undefined;
  let configFile: string;
  const receivers: Receiver[] = [];

  const startDelivery = async () => {
    const c = startChild(nats.url, "worker", { ACH_CONFIG: configFile, ACH_WORKER_ENABLED: "false", ACH_LEASE_TTL: "2s", ACH_DATA_DIR: mkdtempSync(join(tmpdir(), "achd-wh-")) });
    await c.waitFor("delivering webhooks", 30_000);
    return c;
  };
  const api = (path: string, init: RequestInit & { json?: unknown } = {}, on = engine) =>
    apiFetch(on, path, { ...init, ...(init.json !== undefined ? { body: JSON.stringify(init.json), headers: { "content-type": "application/json" } } : {}) });
  const register = async (tenant: string, body: Record<string, unknown>) => {
    const res = await api(`/v1/tenants/${tenant}/webhooks`, { method: "POST", json: body });
    expect(res.status, await res.clone().text()).toBe(201);
    return (await res.json()) as { id: string; secret: string; enabled: boolean };
  };
  const receiver = async (plan?: Receiver["plan"]) => {
    const r = await startReceiver(plan);
    receivers.push(r);
    return r;
  };
  const unlocksOf = async (tenant: string, achievements?: string[]) =>
    (await storedUnlocks(nats.nc, nats.js)).filter((u) => u.tenant_id === tenant && (!achievements || achievements.includes(u.achievement_id)));
  const allAccepted = (r: Receiver, ids: string[]) => (ids.every((id) => r.accepted.has(id)) ? true : undefined);
  /** Every request carried a valid Standard Webhooks signature for its body, and webhook-id = the body's unlock_id. */
  const expectSigned = (r: Receiver, secret: string) => {
    const wh = new Webhook(secret);
    for (const q of r.requests) {
      expect(() => wh.verify(q.body, q.headers)).not.toThrow();
      expect((JSON.parse(q.body) as { unlock_id: string }).unlock_id).toBe(q.id);
    }
  };

  beforeAll(async () => {
    nats = await startTestNats(4);
    engine = await startTestEngine(nats.url, { webhooks: { enabled: false, allowPrivate: true } });
    strict = await startTestEngine(nats.url, { worker: { enabled: false }, webhooks: { enabled: false, allowPrivate: false } });
    const dir = mkdtempSync(join(tmpdir(), "achd-wh-config-"));
    configFile = join(dir, "achd.yaml");
    writeFileSync(configFile, "partitions: 4\nworker:\n  batchSize: 200\nwebhooks:\n  allowPrivate: true\n  timeout: 1s\n  retryFor: 8s\n  disableAfter: 3\n  concurrency: 8\n");
    child = await startDelivery();
  }, 60_000);
  afterAll(async () => {
    await child?.kill();
    for (const r of receivers) await r.close();
    await strict?.stop();
    await engine?.stop();
    await nats?.cleanup();
  });

  it("refuses private addresses at registration unless allowed, and names the field", async () => {
    for (const url of ["http://127.0.0.1:9/x", "http://localhost:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x", "http://[fd00::1]/x", "http://0.0.0.0/x"]) {
      const res = await api("/v1/tenants/t9/webhooks", { method: "POST", json: { url } }, strict);
      expect(res.status, url).toBe(400);
      const body = (await res.json()) as { error: string; message: string };
      expect(body.error).toBe("bad_request");
      expect(body.message, url).toMatch(/^url: .*(private|loopback)/);
    }
    for (const [json, field] of [
      [{ url: "ftp://example.com/x" }, "url"],
      [{ url: "https://u:p@example.com/x" }, "url"],
      [{}, "url"],
      [{ url: "http://127.0.0.1:9/x", achievements: "five-lessons" }, "achievements"],
      [{ url: "http://127.0.0.1:9/x", achievements: ["ok", "not ok"] }, "achievements[1]"],
      [{ url: "http://127.0.0.1:9/x", enabled: "yes" }, "enabled"],
      [{ url: "http://127.0.0.1:9/x", secret: "mine" }, "secret"],
    ] as const) {
      const res = await api("/v1/tenants/t9/webhooks", { method: "POST", json }, engine);
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(((await res.json()) as { message: string }).message.startsWith(`${field}:`), JSON.stringify(json)).toBe(true);
    }
    // Allowed by the configuration (the engine the tests register with): a loopback receiver is taken.
    const r = await receiver();
    const w = await register("t9", { url: r.url });
    expect(w.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect((await api(`/v1/tenants/t9/webhooks/${w.id}`, { method: "DELETE" })).status).toBe(200);
  });

  it("refuses private addresses at delivery unless allowed: nothing reaches the receiver", async () => {
    const r = await receiver();
    const port = new URL(r.url).port;
    const body = JSON.stringify({ unlock_id: "u-x" });
    for (const host of ["127.0.0.1", "localhost"]) {
      const res = await sendWebhook(new URL(`http://${host}:${port}/hooks`), body, signedHeaders("whsec_" + Buffer.alloc(32, 1).toString("base64"), "u-x", body), { timeoutMs: 1000, allowPrivate: false });
      expect(res.outcome, host).toBe("fail");
      expect(res.error, host).toMatch(/private|loopback/);
    }
    expect(r.requests).toHaveLength(0);
    const ok = await sendWebhook(new URL(r.url), body, signedHeaders("whsec_" + Buffer.alloc(32, 1).toString("base64"), "u-x", body), { timeoutMs: 1000, allowPrivate: true });
    expect(ok).toMatchObject({ outcome: "ok", status: 200 });
  });

  it("delivers every unlock through faults, signed, each user's in order; keeps a delivery log; honours the filter, the tenant and disabled webhooks", async () => {
    const all = await receiver(faulty);
    const five = await receiver();
    const off = await receiver();
    const other = await receiver();
    const wAll = await register("t1", { url: all.url });
    const wFive = await register("t1", { url: five.url, achievements: ["five-lessons"] });
    const wOff = await register("t1", { url: off.url, enabled: false });
    const wOther = await register("t2", { url: other.url });
    // Listed without secrets.
    const listed = await (await api("/v1/tenants/t1/webhooks")).text();
    expect(listed).toContain(wAll.id);
    expect(listed).not.toContain(wAll.secret.slice(6));
    expect(listed).not.toContain("secret");

    const users = Array.from({ length: 24 }, (_, i) => `u${i}`);
    await publishAll(nats.js, [...lessons("t1", users), ...lessons("t2", ["v1"])]);
    const stored = await eventually(async () => {
      const u = await unlocksOf("t1");
      return u.length === users.length * 3 ? u : undefined;
    }, 30_000, "t1's unlocks stored");
    await eventually(() => allAccepted(all, stored.map((u) => u.unlock_id)), 40_000, "every unlock delivered to the faulty receiver");
    const fives = stored.filter((u) => u.achievement_id === "five-lessons").map((u) => u.unlock_id);
    await eventually(() => allAccepted(five, fives), 20_000, "five-lessons delivered to the filtered webhook");
    const t2 = await eventually(async () => ((await unlocksOf("t2")).length === 3 ? unlocksOf("t2") : undefined), 20_000, "t2's unlocks");
    await eventually(() => allAccepted(other, t2.map((u) => u.unlock_id)), 20_000, "t2's webhook");

    // Deduplicated on webhook-id, each unlock counts once: exactly the stored ones, nothing of another tenant.
    expect([...all.accepted.keys()].sort()).toEqual(stored.map((u) => u.unlock_id).sort());
    expect([...five.accepted.keys()].sort()).toEqual([...fives].sort());
    expect([...other.accepted.keys()].sort()).toEqual(t2.map((u) => u.unlock_id).sort());
    // Faults happened, and were retried.
    expect(all.requests.filter((q) => q.answered === "fault").length).toBeGreaterThan(10);
    expectSigned(all, wAll.secret);
    expectSigned(five, wFive.secret);
    expectSigned(other, wOther.secret);
    // Each user's unlocks were first accepted in stream order.
    for (const u of users) {
      expect(all.firstByUser.get(u), u).toEqual(stored.filter((s) => s.user_id === u).map((s) => s.unlock_id));
    }
    // The disabled webhook got nothing.
    expect(off.requests).toHaveLength(0);

    // The delivery log: attempts with status codes, latency and errors.
    const log = await eventually(async () => {
      const res = await api(`/v1/tenants/t1/webhooks/${wAll.id}/deliveries`);
      const d = ((await res.json()) as { deliveries: { outcome: string; status: number | null; latency_ms: number; error?: string; attempt: number }[] }).deliveries;
      return d.some((e) => e.outcome === "retrying") && d.some((e) => e.outcome === "delivered") ? d : undefined;
    }, 10_000, "delivery log");
    expect(log.find((e) => e.outcome === "delivered")).toMatchObject({ status: 200 });
    expect(log.some((e) => e.outcome === "retrying" && (e.status === 500 || e.status === 429 || e.status === 503 || e.error))).toBe(true);
    expect(log.every((e) => typeof e.latency_ms === "number")).toBe(true);

    // The delivering process's metrics count the same: every delivery, the retries, each timed from its unlock.
    const line = child!.output.find((l) => l.includes('"msg":"serving /metrics"'));
    const text = await (await fetch((JSON.parse(line!) as { url: string }).url)).text();
    const value = (series: RegExp) => Number(series.exec(text)?.[1] ?? Number.NaN);
    const delivered = value(/^achd_webhook_attempts_total\{outcome="delivered"[^}]*\} (\S+)$/m);
    expect(delivered).toBeGreaterThanOrEqual(stored.length + fives.length + t2.length);
    expect(value(/^achd_webhook_attempts_total\{outcome="retrying"[^}]*\} (\S+)$/m)).toBeGreaterThan(10);
    expect(value(/^achd_webhook_delivery_seconds_count\{[^}]*\} (\S+)$/m)).toBe(delivered);

    // Enabled by hand, the disabled webhook catches up from its creation on.
    const patched = await api(`/v1/tenants/t1/webhooks/${wOff.id}`, { method: "PATCH", json: { enabled: true } });
    expect(patched.status).toBe(200);
    await eventually(() => allAccepted(off, stored.map((u) => u.unlock_id)), 20_000, "the re-enabled webhook catching up");
    expectSigned(off, wOff.secret);

    // Disabled again: the next unlocks reach the other webhooks, not it.
    expect((await api(`/v1/tenants/t1/webhooks/${wOff.id}`, { method: "PATCH", json: { enabled: false } })).status).toBe(200);
    const seen = off.requests.length;
    await new Promise((r) => setTimeout(r, 2500));
    await publishAll(nats.js, lessons("t1", ["late"]));
    const late = await eventually(async () => {
      const u = (await unlocksOf("t1")).filter((x) => x.user_id === "late");
      return u.length === 3 ? u : undefined;
    }, 20_000, "late user's unlocks");
    await eventually(() => allAccepted(all, late.map((u) => u.unlock_id)), 20_000, "late unlocks delivered");
    await new Promise((r) => setTimeout(r, 500));
    expect(off.requests.length).toBe(seen);
    const shown = (await (await api(`/v1/tenants/t1/webhooks/${wOff.id}`)).json()) as { enabled: boolean; disabled_reason: string };
    expect(shown).toMatchObject({ enabled: false });
    expect(shown.disabled_reason).toMatch(/disabled through the API/);
  }, 120_000);

  it("puts a delivery that keeps failing on the dead-letter list, disables the webhook after repeated dead letters, and redelivers by hand", async () => {
    let failing = true;
    // One user's receiver errors (5xx: retried for retryFor), two answer 410 (not retried).
    const r = await receiver((_id, _attempt, user) => (!failing ? { status: 200 } : user === "d0" ? { status: 500 } : { status: 410 }));
    const w = await register("t3", { url: r.url, achievements: ["first-lesson"] });
    await publishAll(nats.js, ["d0", "d1", "d2"].map((u) => ev("t3", u, "lesson.completed", { duration_seconds: 10 })));
    type Dead = { seq: number; unlock_id: string; user_id: string; attempts: number; last_status: number; last_error: string };
    const dead = await eventually(async () => {
      const res = await api(`/v1/tenants/t3/webhooks/${w.id}/dead`);
      const d = ((await res.json()) as { dead_letters: Dead[] }).dead_letters;
      return d.length === 3 ? d : undefined;
    }, 30_000, "three dead letters");
    const d0 = dead.find((d) => d.user_id === "d0")!;
    expect(d0.attempts).toBeGreaterThan(2);
    expect(d0.last_status).toBe(500);
    expect(dead.filter((d) => d.user_id !== "d0").every((d) => d.attempts === 1 && d.last_status === 410)).toBe(true);
    // Three in a row: disabled, with the reason.
    const shown = await eventually(async () => {
      const s = (await (await api(`/v1/tenants/t3/webhooks/${w.id}`)).json()) as { enabled: boolean; disabled_reason: string | null };
      return s.enabled ? undefined : s;
    }, 10_000, "the webhook disabled");
    expect(shown.disabled_reason).toMatch(/3 deliveries in a row/);
    // A disabled webhook is not redelivered to; enabled, a dead letter is.
    expect((await api(`/v1/tenants/t3/webhooks/${w.id}/dead/${d0.seq}/redeliver`, { method: "POST" })).status).toBe(409);
    failing = false;
    expect((await api(`/v1/tenants/t3/webhooks/${w.id}`, { method: "PATCH", json: { enabled: true } })).status).toBe(200);
    const before = r.requests.length;
    const res = await api(`/v1/tenants/t3/webhooks/${w.id}/dead/${d0.seq}/redeliver`, { method: "POST" });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(await res.json()).toMatchObject({ delivered: true, status: 200 });
    expect(r.requests.length).toBe(before + 1);
    expect(r.accepted.has(d0.unlock_id)).toBe(true);
    expectSigned(r, w.secret);
    const left = ((await (await api(`/v1/tenants/t3/webhooks/${w.id}/dead`)).json()) as { dead_letters: Dead[] }).dead_letters;
    expect(left.map((d) => d.seq).sort()).toEqual(dead.filter((d) => d !== d0).map((d) => d.seq).sort());
    // Gone once redelivered; another webhook's letter is not found under this one.
    expect((await api(`/v1/tenants/t3/webhooks/${w.id}/dead/${d0.seq}/redeliver`, { method: "POST" })).status).toBe(404);
    // Re-enabled, it delivers again (from where it stopped: nothing was left).
    await publishAll(nats.js, [ev("t3", "d3", "lesson.completed", { duration_seconds: 10 })]);
    await eventually(() => (r.requests.some((q) => JSON.parse(q.body).user_id === "d3" && q.answered === "ok") ? true : undefined), 20_000, "a delivery after re-enabling");
  }, 90_000);

  it("manages webhooks from the command line: add (secret once, on stdout alone), list, disable, enable, remove", async () => {
    const env = { ...process.env, NATS_URL: nats.url, ACH_CONFIG: configFile, LOG_LEVEL: "silent" };
    const achd = (...args: string[]) => promisify(execFile)(process.execPath, [BIN, "webhooks", ...args], { env });
    const failed = (p: Promise<unknown>) => p.then(() => ({ code: 0, stderr: "" }), (e: { code: number; stderr: string }) => e);
    const r = await receiver();
    const added = await achd("add", "t5", r.url, "--achievement", "first-lesson");
    const secret = added.stdout.trim();
    expect(secret).toMatch(/^whsec_/);
    const id = /webhook (wh_[0-9a-f]{16})/.exec(added.stderr)![1]!;
    const listed = (await achd("list", "t5")).stdout;
    expect(listed).toContain(id);
    expect(listed).toContain("achievements: first-lesson");
    expect(listed).not.toContain(secret.slice(6));
    expect((await achd("disable", "t5", id)).stdout).toContain("disabled (disabled with achd webhooks disable)");
    expect((await (await api(`/v1/tenants/t5/webhooks/${id}`)).json()) as object).toMatchObject({ enabled: false });
    expect((await achd("enable", "t5", id)).stdout).toContain(`${id}  t5  enabled`);
    expect((await achd("remove", "t5", id)).stdout).toContain("removed");
    expect(await failed(achd("remove", "t5", id))).toMatchObject({ code: 1 });
    expect(await failed(achd("add", "t5"))).toMatchObject({ code: 2 });
    const refused = await failed(promisify(execFile)(process.execPath, [BIN, "webhooks", "add", "t5", "http://127.0.0.1:9/x"], { env: { ...env, ACH_WEBHOOKS_ALLOW_PRIVATE: "false" } }));
    expect(refused).toMatchObject({ code: 2 });
    expect(refused.stderr).toMatch(/url: .*loopback/);
  }, 60_000);

  it("keeps delivering every unlock when the delivering process is killed with SIGKILL mid-stream", async () => {
    const r = await receiver();
    r.delayMs = 150;
    const w = await register("t4", { url: r.url });
    const users = Array.from({ length: 30 }, (_, i) => `k${i}`);
    await publishAll(nats.js, lessons("t4", users.slice(0, 20)));
    await eventually(() => (r.accepted.size >= 10 ? true : undefined), 30_000, "deliveries under way");
    const kv = await new Kvm(nats.nc).open(Buckets.Leases);
    const holder = JSON.parse(new TextDecoder().decode((await kv.get(WEBHOOK_LEASE_KEY))!.value)) as { owner: string };
    await child!.kill("SIGKILL");
    const atKill = r.accepted.size;
    // Unlocks keep coming while nobody delivers.
    await publishAll(nats.js, lessons("t4", users.slice(20)));
    child = await startDelivery();
    const stored = await eventually(async () => {
      const u = await unlocksOf("t4");
      return u.length === users.length * 3 ? u : undefined;
    }, 30_000, "t4's unlocks stored");
    await eventually(() => allAccepted(r, stored.map((u) => u.unlock_id)), 40_000, "every unlock delivered after the restart");
    expect(atKill).toBeLessThan(stored.length);
    const now = JSON.parse(new TextDecoder().decode((await kv.get(WEBHOOK_LEASE_KEY))!.value)) as { owner: string };
    expect(now.owner).not.toBe(holder.owner);
    expect([...r.accepted.keys()].sort()).toEqual(stored.map((u) => u.unlock_id).sort());
    expectSigned(r, w.secret);
    for (const u of users) expect(r.firstByUser.get(u), u).toEqual(stored.filter((s) => s.user_id === u).map((s) => s.unlock_id));
    // The consumer is the webhook's; removing the webhook removes it.
    expect((await nats.jsm.consumers.info(Streams.Unlocks, w.id)).config.filter_subject).toBe("ach.unlocked.t4.>");
    expect((await api(`/v1/tenants/t4/webhooks/${w.id}`, { method: "DELETE" })).status).toBe(200);
    await expect(nats.jsm.consumers.info(Streams.Unlocks, w.id)).rejects.toThrow();
    expect((await api(`/v1/tenants/t4/webhooks/${w.id}`)).status).toBe(404);
  }, 120_000);
  it("stops delivering while another process holds the lease, and goes on once it is free", async () => {
    const r = await receiver();
    await register("t6", { url: r.url });
    const kv = await new Kvm(nats.nc).open(Buckets.Leases);
    // Another owner takes the lease (as after an expiry): the holder's next renewal fails and it stops.
    const intruder = new TextEncoder().encode(JSON.stringify({ owner: "intruder", since: new Date().toISOString() }));
    await kv.put(WEBHOOK_LEASE_KEY, intruder);
    const hold = setInterval(() => void kv.put(WEBHOOK_LEASE_KEY, intruder).catch(() => undefined), 300);
    try {
      await child!.waitFor("webhook delivery lease lost", 10_000);
      await publishAll(nats.js, lessons("t6", ["h1", "h2"]));
      await eventually(async () => ((await unlocksOf("t6")).length === 6 ? true : undefined), 20_000, "t6's unlocks");
      await new Promise((res) => setTimeout(res, 2000));
      expect(r.requests).toHaveLength(0);
    } finally {
      clearInterval(hold);
    }
    // Left to expire (leases.ttl): the process takes the lease again and delivers what waited.
    const stored = await unlocksOf("t6");
    await eventually(() => allAccepted(r, stored.map((u) => u.unlock_id)), 20_000, "deliveries after the lease came back");
  }, 60_000);
});

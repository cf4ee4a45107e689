import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { Webhook } from "standardwebhooks";
import type { EventInput } from "../src/events/mod.ts";
import { percentiles, type Percentiles } from "./engine.ts";
import { publishEvent, startAchd, until, type OnProgress, type Stack } from "./stack.ts";

/** Webhook delivery: how long an unlock takes to reach a tenant's webhook receiver, at a steady unlock rate. */
export type WebhooksResult = {
  /** Unlocks sent (events that each unlock at once). */
  unlocks: number;
  /** Offered unlocks per second. */
  rate: number;
  /** Events published per second over the publishing window (publishes that failed not counted). */
  achievedRate: number;
  /** Publishes that failed (timed out). */
  failedPublishes: number;
  /** Distinct webhook-ids received (of `unlocks`). */
  deliveries: number;
  /** Deliveries per second, from the first publish to the last delivery: below `rate`, delivery fell behind. */
  deliveredRate: number;
  /** Requests whose webhook-id had been received before. */
  duplicates: number;
  /** Requests whose signature `standardwebhooks` refused. */
  signatureFailures: number;
  /** From publishing the event that unlocks to the receiver having the request, first receipt of each webhook-id, ms. */
  latency: Percentiles;
};

/**
 * Starts `achd start` (workers, API and webhook delivery, no keys, private
 * addresses allowed) as a child on the stack's server, registers a webhook
 * of one tenant pointing at a receiver on 127.0.0.1 that answers 200 at
 * once, then publishes `unlocks` events that each unlock at once (a new
 * user's first `app.opened`), `rate` per second in 10 ms bursts with the
 * publishes in flight together. Each delivery's signature is verified; its
 * latency runs from its event's publish to the receiver having the request.
 */
export async function measureWebhooks(stack: Stack, unlocks: number, rate: number, onProgress?: OnProgress): Promise<WebhooksResult> {
  const tenant = "bench-webhooks";
  const sentAt = new Map<string, number>();
  const seen = new Set<string>();
  const latencies: number[] = [];
  let duplicates = 0;
  let signatureFailures = 0;
  let warm = false;
  let lastReceipt = 0;
  let verifier: Webhook | undefined;
  const receiver = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const at = performance.now();
      res.end("ok");
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      try {
        verifier!.verify(body, headers);
      } catch {
        signatureFailures++;
      }
      let user: string;
      try {
        user = (JSON.parse(body) as { user_id: string }).user_id;
      } catch {
        // Not the unlock it should be: the signature check above has counted it if it was altered.
        return;
      }
      if (user === "wh-warmup") return void (warm = true);
      const id = headers["webhook-id"]!;
      if (seen.has(id)) return void duplicates++;
      seen.add(id);
      lastReceipt = at;
      const t = sentAt.get(user);
      if (t !== undefined) latencies.push(at - t);
    });
  });
  // Many requests in flight at once: keep-alive sockets from the engine's agent stay open between them.
  receiver.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  const hook = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hooks`;

  const { url: listening, stop } = startAchd(stack, { ACH_WORKER_ID: "bench-webhooks", ACH_WEBHOOKS_ALLOW_PRIVATE: "true" });
  try {
    const url = await listening;
    const reg = await fetch(`${url}/v1/tenants/${tenant}/webhooks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ url: hook }) });
    if (reg.status !== 201) throw new Error(`registering the webhook answered ${reg.status}: ${await reg.text()}`);
    verifier = new Webhook(((await reg.json()) as { secret: string }).secret);

    const event = (user: string): EventInput => ({ event_id: `${user}-0`, event_type: "app.opened", tenant_id: tenant, user_id: user, occurred_at: new Date().toISOString(), source: "bench", payload: {} });
    // One unlock through first, unmeasured: the delivering process takes its lease and starts the webhook's consumer.
    await publishEvent(stack.js, event("wh-warmup"));
    await until(() => warm, 50, 60_000).catch(() => {
      throw new Error("the warm-up unlock did not reach the webhook within 60 s");
    });

    // Above what the stack can take, publishes time out: counted, not thrown.
    let failed = 0;
    const pending: Promise<unknown>[] = [];
    const tickMs = 10;
    const t0 = performance.now();
    let sent = 0;
    while (sent < unlocks) {
      // Catch up to the offered rate every tick: events due = rate × elapsed.
      const due = Math.min(unlocks, Math.floor((rate * (performance.now() - t0)) / 1000));
      while (sent < due) {
        const user = `wh-${sent++}`;
        sentAt.set(user, performance.now());
        pending.push(publishEvent(stack.js, event(user)).catch(() => void failed++));
      }
      onProgress?.(sent, unlocks);
      const next = t0 + (Math.floor((performance.now() - t0) / tickMs) + 1) * tickMs;
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    }
    await Promise.all(pending);
    const elapsed = (performance.now() - t0) / 1000;
    await until(() => seen.size >= unlocks - failed, 100, 120_000).catch(() => undefined);
    // A moment more for duplicates, if any come.
    await new Promise((r) => setTimeout(r, 500));
    return { unlocks, rate, achievedRate: (sent - failed) / elapsed, failedPublishes: failed, deliveries: seen.size, deliveredRate: seen.size ? seen.size / ((lastReceipt - t0) / 1000) : 0, duplicates, signatureFailures, latency: percentiles(latencies) };
  } finally {
    await stop();
    receiver.closeAllConnections();
    await new Promise((r) => receiver.close(r));
  }
}

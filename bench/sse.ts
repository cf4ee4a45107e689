import type { EventInput } from "../src/events/mod.ts";
import { percentiles, type Percentiles } from "./engine.ts";
import { publishEvent, rssOf, startAchd, until, type OnProgress, type Stack } from "./stack.ts";

/** SSE fan-out: many open streams on one API process, and how long an unlock takes to reach all of them. */
export type SseResult = {
  clients: number;
  unlocks: number;
  /** Unlock events received, over all clients (each client gets every unlock of its tenant). */
  deliveries: number;
  /** From publishing the event that unlocks to each client receiving the unlock, ms. */
  latency: Percentiles;
  /** The API process's RSS before the streams opened, with them open, and the difference per stream. */
  rssMb: { before: number; open: number; perStreamKb: number };
};

/**
 * Starts `achd start` (workers and API, no keys) as a child on the stack's
 * server, opens `clients` SSE streams of one tenant's unlocks, then
 * publishes `unlocks` events that each unlock at once (a new user's first
 * `app.opened`), `rate` per second, and times each delivery to each client.
 */
export async function measureSse(stack: Stack, clients: number, unlocks: number, rate: number, onProgress?: OnProgress): Promise<SseResult> {
  const { child, url: listening, stop } = startAchd(stack, { ACH_WORKER_ID: "bench-sse" });
  const streams: AbortController[] = [];
  try {
    const url = await listening;
    const before = await rssOf(child.pid!);
    const sentAt = new Map<string, number>();
    const latencies: number[] = [];
    let deliveries = 0;
    const tenant = "bench-sse";
    for (let i = 0; i < clients; i++) {
      const ctrl = new AbortController();
      streams.push(ctrl);
      // Opened as fast as the API's per-key request rate lets one client (the bench) open them.
      let res: Response;
      for (;;) {
        res = await fetch(`${url}/v1/tenants/${tenant}/unlocks/stream`, { signal: ctrl.signal });
        if (res.status !== 429) break;
        await new Promise((r) => setTimeout(r, 1000 * Number(res.headers.get("retry-after") ?? 1)));
      }
      if (res.status !== 200) throw new Error(`stream ${i} answered ${res.status}: ${await res.text()}`);
      void readSse(res.body as unknown as AsyncIterable<Uint8Array>, (e) => {
        if (e.event !== "unlock") return;
        const t = sentAt.get((JSON.parse(e.data) as { user_id: string }).user_id);
        if (t !== undefined) latencies.push(performance.now() - t);
        deliveries++;
      });
      if (i % 100 === 99) onProgress?.(i + 1, clients + unlocks);
    }
    const open = await rssOf(child.pid!);
    for (let i = 0; i < unlocks; i++) {
      const user = `sse-${i}`;
      const e: EventInput = { event_id: `sse-${i}`, event_type: "app.opened", tenant_id: tenant, user_id: user, occurred_at: new Date().toISOString(), source: "bench", payload: {} };
      sentAt.set(user, performance.now());
      await publishEvent(stack.js, e);
      onProgress?.(clients + i + 1, clients + unlocks);
      await new Promise((r) => setTimeout(r, 1000 / rate));
    }
    await until(() => deliveries >= clients * unlocks, 100, 120_000).catch(() => undefined);
    return {
      clients,
      unlocks,
      deliveries,
      latency: percentiles(latencies),
      rssMb: { before: before / 2 ** 20, open: open / 2 ** 20, perStreamKb: (open - before) / 1024 / clients },
    };
  } finally {
    for (const s of streams) s.abort();
    await stop();
  }
}

/** One server-sent event: its fields as sent (comments left out). */
export type SseEvent = { id?: string; event?: string; data: string };

/** Reads a `text/event-stream` body, handing over each event (a block with an `event:` line), until it ends or is aborted. */
export async function readSse(body: AsyncIterable<Uint8Array>, onEvent: (e: SseEvent) => void): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  try {
    for await (const chunk of body) {
      buf += dec.decode(chunk, { stream: true });
      let at: number;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, at);
        buf = buf.slice(at + 2);
        const e: SseEvent = { data: "" };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const [k, ...v] = line.split(": ");
          if (k === "id") e.id = v.join(": ");
          else if (k === "event") e.event = v.join(": ");
          else if (k === "data") e.data += v.join(": ");
        }
        if (e.event) onEvent(e);
      }
    }
  } catch {
    // Aborted by the reader.
  }
}

import type { ServerResponse } from "node:http";
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { unlockOf } from "../core/mod.ts";
import { parseUnlockedSubject, unlockedFilter } from "../events/mod.ts";
import { readOrdered, Streams } from "../nats/mod.ts";
import type { Logger } from "../util/log.ts";
import type { StreamedUnlock, UnlockFanout } from "./fanout.ts";

/** How long a client may hold more than `maxBufferedBytes` unsent before it is cut off. */
const SLOW_AFTER_MS = 5000;

/** Which unlocks a stream carries: a tenant's (or every tenant's), one user's, and whether backfilled ones. */
export type UnlockFilter = { tenant?: string; user?: string; backfill: boolean };

export type SseOptions = {
  /** A comment line this often keeps proxies from closing an idle stream. */
  heartbeatMs: number;
  /** A client whose unsent output stays past this (5 s, or grows past eight times it) is disconnected with a reason. */
  maxBufferedBytes: number;
};

/** What the stream must hold for `f` (the subject filter of a catch-up read). */
function subjectOf(f: UnlockFilter): string {
  return unlockedFilter(f.tenant, f.user);
}

function matches(f: UnlockFilter, u: Pick<StreamedUnlock, "tenant" | "user" | "body">): boolean {
  if (f.tenant !== undefined && u.tenant !== f.tenant) return false;
  if (f.user !== undefined && u.user !== f.user) return false;
  return f.backfill || u.body.backfill !== true;
}

/**
 * Serves one server-sent-events stream of unlocks on `res` (already
 * hijacked from the framework) until the client goes away or the stream is
 * closed. Each event's `id` is the unlock's sequence in `ACH_UNLOCKS`.
 *
 * With `lastId` (the client's `Last-Event-ID`), what the client missed is
 * read from the stream first — every matching unlock after `lastId` up to
 * the stream's end — while live unlocks wait in a queue; then the queue is
 * sent, skipping what the catch-up already sent. So a reconnecting client
 * gets exactly what it missed, in order, once. A `lastId` past the stream's
 * end (from another deployment, or made up) resumes at the end: the client
 * gets what comes next rather than nothing until the stream catches up
 * with it.
 *
 * Returns a function that ends the stream (for shutdown).
 */
export function serveUnlockStream(
  d: { res: ServerResponse; fanout: UnlockFanout; js: JetStreamClient; jsm: JetStreamManager; log: Logger; onEnd?: (why: "client" | "slow" | "failed" | "server") => void },
  filter: UnlockFilter,
  lastId: number | undefined,
  opts: SseOptions,
): () => void {
  const { res, fanout } = d;
  let sent = lastId ?? 0;
  let live = lastId === undefined;
  const waiting: StreamedUnlock[] = [];
  let closed = false;
  const close = (reason?: string, why: "client" | "slow" | "failed" | "server" = "client") => {
    if (closed) return;
    closed = true;
    d.onEnd?.(why);
    clearTimeout(slowTimer);
    stopListening();
    clearInterval(heartbeat);
    if (reason && !res.destroyed) res.write(`event: close\ndata: ${JSON.stringify({ reason })}\n\n`);
    res.end();
    // A client that reads nothing does not take the last bytes either: do not wait for it.
    setTimeout(() => res.destroy(), 1000).unref();
  };
  const write = (seq: number, json: string): boolean => {
    sent = seq;
    return res.write(`id: ${seq}\nevent: unlock\ndata: ${json}\n\n`);
  };
  // A burst may fill the client's buffers for a moment; a client that does not take it within SLOW_AFTER_MS (or lets
  // eight times the bound pile up) is cut off.
  let slowTimer: NodeJS.Timeout | undefined;
  const tooSlow = () => close(`too slow: more than ${opts.maxBufferedBytes} bytes unsent; reconnect with Last-Event-ID to resume`, "slow");
  res.on("drain", () => {
    clearTimeout(slowTimer);
    slowTimer = undefined;
  });
  const stopListening = fanout.listen((u) => {
    if (closed || !matches(filter, u)) return;
    // Until the catch-up ends, where the client stands is not known yet (a lastId past the end is lowered): all wait.
    if (!live) return void waiting.push(u);
    if (u.seq <= sent) return;
    write(u.seq, u.json);
    const unsent = res.writableLength;
    if (unsent > 8 * opts.maxBufferedBytes) return tooSlow();
    if (unsent > opts.maxBufferedBytes && !slowTimer) slowTimer = setTimeout(() => res.writableLength > opts.maxBufferedBytes && tooSlow(), SLOW_AFTER_MS).unref();
  });
  const heartbeat = setInterval(() => !closed && res.write(": keep-alive\n\n"), opts.heartbeatMs);
  heartbeat.unref();
  res.on("close", () => close());

  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache, no-transform", connection: "keep-alive", "x-accel-buffering": "no" });
  // Tells EventSource how soon to reconnect; the comment makes proxies pass the headers on at once.
  res.write("retry: 2000\n: connected\n\n");
  if (lastId !== undefined) {
    catchUp(d, filter, lastId, (seq, json) => (closed ? false : write(seq, json)), () => closed)
      .then((end) => {
        if (closed) return;
        sent = Math.min(sent, end);
        for (const u of waiting.splice(0)) if (u.seq > sent) write(u.seq, u.json);
        live = true;
      })
      .catch((err: unknown) => {
        d.log.warn({ err: String(err), from: lastId }, "SSE catch-up failed");
        close(`could not read the unlocks after ${lastId}: ${(err as Error).message}; reconnect to try again`, "failed");
      });
  }
  return () => close("server stopping", "server");
}

/** Resolves when `res` can take more, or is closed. */
function writable(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}

/**
 * Sends every unlock matching `filter` after `lastId`, up to the stream's
 * end when it started, waiting for the client to take what it could not
 * buffer before reading on (a catch-up never piles up in memory). Returns
 * that end. A message that is not an unlock is passed over, as the live
 * reader passes it over (fanout.ts).
 */
async function catchUp(d: { res: ServerResponse; js: JetStreamClient; jsm: JetStreamManager }, filter: UnlockFilter, lastId: number, send: (seq: number, json: string) => boolean, stopped: () => boolean): Promise<number> {
  const end = (await d.jsm.streams.info(Streams.Unlocks)).state.last_seq;
  if (end <= lastId) return end;
  const from = { filter_subjects: subjectOf(filter), deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastId + 1 };
  await readOrdered(
    d.js,
    Streams.Unlocks,
    from,
    Number.MAX_SAFE_INTEGER,
    async (m) => {
      if (stopped() || m.seq > end) return false;
      const where = parseUnlockedSubject(m.subject);
      const json = m.string();
      const body = where ? unlockOf(json) : undefined;
      if (where && body && matches(filter, { ...where, body }) && !send(m.seq, json)) await writable(d.res);
      return m.seq < end;
    },
    { size: 256, expires: 2000 },
  );
  return end;
}

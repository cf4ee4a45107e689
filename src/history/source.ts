/**
 * Where history is read from: the events stream as stored (all of it, one
 * tenant's or one user's events), or a JSONL export of it, so that events
 * the stream no longer keeps can be brought back in.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { PARTITIONED_PREFIX } from "../events/mod.ts";
import { isProbe, Streams } from "../nats/mod.ts";

/** One stored message of the events stream: its subject, body, `Nats-Msg-Id`, sequence and stream time (epoch ms). */
export type StoredEvent = { subject: string; data: Uint8Array; msgId: string | undefined; seq: number; storedAt: number };

/** What the events stream holds now, and how long it keeps it: the horizon of every history answer. */
export type Horizon = {
  /** The stream's first and last sequence (first_seq > 1: older events are gone). */
  first_seq: number;
  last_seq: number;
  /** Stream time of the oldest event kept, or null when the stream is empty. */
  oldest_stored_at: string | null;
  messages: number;
  bytes: number;
  /** `events.maxAge`: how long the stream keeps an event (0: no age limit). */
  max_age_ms: number;
  /** True when no event was ever dropped (aged out or purged): the stream holds all history. */
  complete: boolean;
};

/** The events stream's horizon (one info request, one message read for the oldest time). */
export async function streamHorizon(jsm: JetStreamManager): Promise<Horizon> {
  const info = await jsm.streams.info(Streams.Events);
  const s = info.state;
  const maxAge = Math.round(Number(info.config.max_age ?? 0) / 1e6);
  const oldest = s.messages > 0 && s.first_ts && !s.first_ts.startsWith("0001") ? new Date(s.first_ts).toISOString() : null;
  return { first_seq: s.first_seq, last_seq: s.last_seq, oldest_stored_at: oldest, messages: s.messages, bytes: s.bytes, max_age_ms: maxAge, complete: s.first_seq <= 1 };
}

/** Which stored events to read. */
export type StreamRange = {
  /** From this sequence on (default: the first stored). */
  fromSeq?: number | undefined;
  /** Up to this sequence (default: the last stored when reading starts). */
  toSeq?: number | undefined;
  /** From this stream time on (epoch ms), instead of a sequence. */
  fromTime?: number | undefined;
  /** Only this tenant's events (and only this user's, with `user`): filtered by the server. */
  tenant?: string | undefined;
  user?: string | undefined;
};

const dec = new TextDecoder();

/** The subject filter of a range: every partitioned event, a tenant's, or a user's. */
function rangeFilter(r: Pick<StreamRange, "tenant" | "user">): string {
  if (r.user && !r.tenant) throw new Error("a user filter needs its tenant");
  return r.tenant ? `${PARTITIONED_PREFIX}.*.${r.tenant}.${r.user ? `${r.user}.` : ""}>` : `${PARTITIONED_PREFIX}.>`;
}

/**
 * Reads stored events in stream order through an ordered consumer (no acks,
 * no per-message round trip), skipping the engine's own probes. Ends at
 * `toSeq` or at the last message when reading started. `onTotal` is told
 * how many messages the range holds, once known.
 */
export async function* streamEvents(js: JetStreamClient, jsm: JetStreamManager, r: StreamRange = {}, onTotal?: (total: number) => void): AsyncGenerator<StoredEvent> {
  const info = await jsm.streams.info(Streams.Events);
  const toSeq = Math.min(r.toSeq ?? info.state.last_seq, info.state.last_seq);
  const fromSeq = Math.max(r.fromSeq ?? 1, info.state.first_seq);
  if (info.state.messages === 0 || fromSeq > toSeq) return;
  const start =
    r.fromTime !== undefined && r.fromSeq === undefined ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(r.fromTime).toISOString() } : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq };
  const consumer = await js.consumers.get(Streams.Events, { filter_subjects: rangeFilter(r), ...start });
  // A filtered range can be empty: nothing would ever be delivered.
  const pending = (await consumer.info()).num_pending;
  if (pending === 0) return;
  const messages = await consumer.consume({ max_messages: 10_000 });
  let first = true;
  try {
    for await (const m of messages) {
      if (m.seq > toSeq) break;
      if (first) {
        first = false;
        onTotal?.(1 + Math.min(m.info.pending, toSeq - m.seq));
      }
      const storedAt = Math.floor(m.info.timestampNanos / 1e6);
      if (!isProbe(m.subject, m.headers) && (r.fromTime === undefined || storedAt >= r.fromTime)) {
        yield { subject: m.subject, data: m.data, msgId: m.headers?.get("Nats-Msg-Id") || undefined, seq: m.seq, storedAt };
      }
      if (m.seq >= toSeq || m.info.pending === 0) break;
    }
  } finally {
    await messages.close();
  }
}

/** One line of a history export: the stored message, its body as the producer sent it (JSON text). */
export type ExportLine = { seq: number; stored_at: string; subject: string; msg_id?: string; body: string };

/** The export line of a stored event. */
export function exportLine(e: StoredEvent): string {
  const line: ExportLine = { seq: e.seq, stored_at: new Date(e.storedAt).toISOString(), subject: e.subject, ...(e.msgId ? { msg_id: e.msgId } : {}), body: dec.decode(e.data) };
  return JSON.stringify(line);
}

/** A line of an export file that cannot be read back: which line, and why. */
class ExportFileError extends Error {
  override name = "ExportFileError";
}

const enc = new TextEncoder();

/**
 * Reads a history export (JSONL, as `achd history export` writes it), in
 * file order, optionally one tenant's or user's events only. Lines must
 * come in increasing `seq` (a file is one stream's history).
 */
async function* fileEvents(path: string, r: Pick<StreamRange, "tenant" | "user" | "fromSeq" | "toSeq" | "fromTime"> = {}): AsyncGenerator<StoredEvent> {
  const lines = createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Infinity });
  const prefix = r.tenant ? `.${r.tenant}.${r.user ? `${r.user}.` : ""}` : undefined;
  let n = 0;
  let last = 0;
  for await (const text of lines) {
    n++;
    if (!text.trim()) continue;
    let l: ExportLine;
    try {
      l = JSON.parse(text) as ExportLine;
    } catch (err) {
      throw new ExportFileError(`${path}:${n}: not JSON (${(err as Error).message})`);
    }
    const storedAt = Date.parse(l.stored_at);
    if (!Number.isSafeInteger(l.seq) || l.seq <= last || typeof l.subject !== "string" || typeof l.body !== "string" || !Number.isFinite(storedAt)) {
      throw new ExportFileError(`${path}:${n}: expected {"seq": a number above the previous line's, "stored_at": an RFC 3339 time, "subject": "ach.p.…", "body": "…"}`);
    }
    last = l.seq;
    if ((r.fromSeq !== undefined && l.seq < r.fromSeq) || (r.toSeq !== undefined && l.seq > r.toSeq) || (r.fromTime !== undefined && storedAt < r.fromTime)) continue;
    // ach.p.<k>.<tenant>.<user>.…: the tenant (and user) follow the partition number.
    if (prefix && !l.subject.slice(l.subject.indexOf(".", PARTITIONED_PREFIX.length + 1)).startsWith(prefix)) continue;
    yield { subject: l.subject, data: enc.encode(l.body), msgId: l.msg_id, seq: l.seq, storedAt };
  }
}

/**
 * History from an export file followed by what the stream holds after the
 * file's last sequence: older events brought back in, then the live log.
 */
export async function* fileThenStream(path: string, js: JetStreamClient, jsm: JetStreamManager, r: StreamRange = {}): AsyncGenerator<StoredEvent> {
  let last = 0;
  for await (const e of fileEvents(path, r)) {
    last = e.seq;
    yield e;
  }
  yield* streamEvents(js, jsm, last ? { ...r, fromSeq: Math.max(last + 1, r.fromSeq ?? 1) } : r);
}

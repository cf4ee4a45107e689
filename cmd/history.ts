/**
 * `achd history export|horizon` — the events log as history: every stored
 * event written out as JSONL (to keep what the stream will age out, and to
 * bring it back with `--from-file`), and how far back the stream goes.
 */
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { exportLine, streamEvents, streamHorizon, type Horizon } from "../src/history/mod.ts";
import { dispatchGroup, parseCommand, PROGRESS_OPTIONS, UsageError, type ExitCode } from "./cli.ts";
import { idArg, withHistory } from "./history-common.ts";
import { progressUnless } from "./progress.ts";

const EXPORT_USAGE = `usage: achd history export [--tenant T] [--user U] [--out FILE] [--no-progress]
  write every stored event as a JSON line ({seq, stored_at, subject, msg_id, body}), in stream order:
  a history export that --from-file of achd rules shadow, backfill and users reads back
  --tenant T     only T's events
  --user U       only U's events (needs --tenant)
  --out FILE     write to FILE (created with mode 0600; default: stdout)
  --no-progress  no progress on stderr`;
const HORIZON_USAGE = `usage: achd history horizon
  how far back the events stream goes: its range, oldest event, size and events.maxAge as JSON on
  stdout; on stderr the same for people, with the bytes an event takes and per million events`;
const USAGE = `usage: achd history export [--tenant T] [--user U] [--out FILE] [--no-progress]
       achd history horizon`;

/** Lines written per write call (one call per line would be slow on a pipe). */
const BATCH = 500;

async function exportCmd(args: string[]): Promise<ExitCode> {
  const name = "achd history export";
  const a = parseCommand({ name, usage: EXPORT_USAGE, options: { tenant: { type: "string" }, user: { type: "string" }, out: { type: "string" }, ...PROGRESS_OPTIONS } }, args);
  if (!a) return 0;
  const tenant = a.values.tenant === undefined ? undefined : idArg(name, "--tenant", a.values.tenant);
  const user = a.values.user === undefined ? undefined : idArg(name, "--user", a.values.user);
  if (user && !tenant) throw new UsageError(`${name}: --user needs --tenant (a user id is unique within its tenant)\n${EXPORT_USAGE}`);
  return withHistory<ExitCode>("achd-history-export", async (h) => {
    const out = a.values.out === undefined ? process.stdout : createWriteStream(a.values.out, { mode: 0o600 });
    if (out !== process.stdout) await once(out, "open");
    // A write that fails (a full disk, a reader that went away: EPIPE) ends the export with its error.
    let failed: Error | undefined;
    out.on("error", (err: Error) => (failed ??= err));
    const progress = progressUnless(a.values["no-progress"], { label: "export", unit: "events" });
    let n = 0;
    let batch: string[] = [];
    const flush = async () => {
      if (failed) throw failed;
      if (!batch.length) return;
      const text = `${batch.join("\n")}\n`;
      batch = [];
      // Waits for a slow reader: the stream is read no faster than it is written.
      if (!out.write(text)) await once(out, "drain");
    };
    try {
      for await (const e of streamEvents(h.js, h.jsm, { tenant, user }, (total) => progress.set(n, total))) {
        batch.push(exportLine(e));
        progress.set(++n);
        if (batch.length >= BATCH) await flush();
      }
      await flush();
      if (failed) throw failed;
    } finally {
      progress.stop();
      if (out !== process.stdout) await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    }
    if (a.values.out !== undefined) console.error(`${name}: ${n} events written to ${a.values.out}`);
    return 0;
  });
}

/** "7 d", "36 h", "90 min", "45 s": the largest unit that keeps the number whole. */
const age = (ms: number) => (ms % 86_400_000 === 0 ? `${ms / 86_400_000} d` : ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : ms % 60_000 === 0 ? `${ms / 60_000} min` : `${Math.round(ms / 1000)} s`);
const bytes = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${Math.round(n)} B`);

/** The horizon for people: how far back, how long events are kept, and what an event costs. */
function horizonLine(h: Horizon): string {
  const back = h.messages === 0 ? "the events stream is empty" : `history goes back to ${h.oldest_stored_at ?? "?"} (seq ${h.first_seq}–${h.last_seq}, ${h.messages} events)`;
  const whole = h.complete ? "it holds every event ever stored" : `events before seq ${h.first_seq} are gone (aged out or purged): bring them back with an export (--from-file)`;
  const kept = h.max_age_ms ? `events.maxAge ${age(h.max_age_ms)}` : "events.maxAge 0 (kept forever)";
  const per = h.messages > 0 ? `; ${Math.round(h.bytes / h.messages)} bytes per event, about ${bytes((h.bytes / h.messages) * 1e6)} per million events` : "";
  return `${back}; ${whole}; ${kept}; ${bytes(h.bytes)} stored${per}`;
}

async function horizonCmd(args: string[]): Promise<ExitCode> {
  const a = parseCommand({ name: "achd history horizon", usage: HORIZON_USAGE, options: {} }, args);
  if (!a) return 0;
  return withHistory<ExitCode>("achd-history-horizon", async (h) => {
    const horizon = await streamHorizon(h.jsm);
    console.log(JSON.stringify(horizon));
    console.error(horizonLine(horizon));
    return 0;
  });
}

/** Runs `achd history <sub> …`; returns the exit code. */
export function historyCmd(args: string[]): Promise<ExitCode> {
  return dispatchGroup("achd history", USAGE, args, { export: exportCmd, horizon: horizonCmd });
}

/**
 * How far a long command is (`achd replay`, `achd bench`, `achd simulate
 * --progress`), on stderr: stdout carries the results scripts parse. On a
 * terminal, a bar (drawn by cli-progress) with rate and ETA; otherwise a
 * plain line every 2 s, e.g.
 * `replay: 41,200/100,000 events (41%), 8,300 events/s, ETA 7 s`.
 * Both end with one closing line: what was done, in how long, at what rate.
 */
import cliProgress from "cli-progress";

/** What {@link startProgress} reports on. */
export type ProgressOptions = {
  /** Starts every line, e.g. "replay" or "bench engine". */
  label: string;
  /** Units of work in all, when known; without it there is no percentage and no ETA. */
  total?: number | undefined;
  /** What is counted, plural: "events". */
  unit: string;
  /** Where progress goes (default: stderr). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** A bar when true, plain lines when false (default: whether the stream is a terminal). */
  tty?: boolean | undefined;
  /** Milliseconds between plain lines (default 2000). */
  everyMs?: number;
  /** The clock in milliseconds (default: `performance.now`); tests pass a fake one. */
  now?: () => number;
};

/** A running progress report. */
export type Progress = {
  /** `n` more units done (default 1). */
  tick(n?: number): void;
  /** `done` units done so far; `total` when it became known or changed. */
  set(done: number, total?: number): void;
  /** Ends the report with its closing line, `summary` appended when given. Later calls do nothing. */
  stop(summary?: string): void;
};

/** A report that shows nothing: what `--no-progress` gets. */
export const NO_PROGRESS: Progress = { tick() {}, set() {}, stop() {} };

/** A report unless `off` (`--no-progress`). */
export function progressUnless(off: boolean | undefined, opts: ProgressOptions): Progress {
  return off ? NO_PROGRESS : startProgress(opts);
}

const count = (n: number) => Math.round(n).toLocaleString("en-US");

/** "0.4 s", "7 s", "42 s", "2 min 5 s", "1 h 3 min": tenths only below 10 s and only when given. */
export function duration(seconds: number): string {
  if (seconds < 9.95 && !Number.isInteger(seconds)) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Starts reporting progress; call `stop()` when the work ends, failed or not (a terminal bar keeps a timer running until then). */
export function startProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? stream.isTTY === true;
  const now = opts.now ?? (() => performance.now());
  const everyMs = opts.everyMs ?? 2000;
  const { label, unit } = opts;
  const t0 = now();
  let total = opts.total;
  let done = 0;
  let lastLine = t0;
  // When `done` reached `total`: the closing line times the work, not what the command does after it.
  let finishedAt: number | undefined;
  let stopped = false;
  let bar: cliProgress.SingleBar | undefined;
  let barHasTotal = false;

  const rate = (at: number) => (at > t0 ? (done * 1000) / (at - t0) : 0);
  // Whole seconds, rounded up: tenths of a guess would be false precision. None in the first second: the rate
  // then is mostly start-up (connecting, starting threads) and would promise minutes.
  const eta = (at: number, r: number) => (total !== undefined && r > 0 && at - t0 >= 1000 ? `ETA ${duration(Math.ceil(Math.max(0, total - done) / r))}` : "ETA –");

  const line = (at: number) => {
    const r = rate(at);
    const of = total === undefined ? `${count(done)} ${unit}` : `${count(done)}/${count(total)} ${unit} (${total > 0 ? Math.floor((done * 100) / total) : 100}%)`;
    stream.write(`${label}: ${of}, ${count(r)} ${unit}/s${total === undefined ? "" : `, ${eta(at, r)}`}\n`);
  };

  const draw = (at: number) => {
    const r = rate(at);
    // Not `eta`: cli-progress's own tokens win over the payload, and its ETA is not the one the lines give.
    const payload = { rate: count(r), left: eta(at, r) };
    // The format depends on whether there is a total: a total that turns up later starts a new bar.
    if (bar && barHasTotal !== (total !== undefined)) {
      bar.stop();
      bar = undefined;
    }
    if (!bar) {
      barHasTotal = total !== undefined;
      bar = new cliProgress.SingleBar({
        stream,
        format: barHasTotal ? `${label} [{bar}] {percentage}% {value}/{total} ${unit}, {rate}/s, {left}` : `${label} {value} ${unit}, {rate}/s`,
        formatValue: (v, _o, type) => (type === "value" || type === "total" ? count(Number(v)) : String(v)),
        // What the text beside it leaves of the terminal's width (80 when unknown), 10 to 40 wide.
        barsize: Math.max(10, Math.min(40, ((stream as { columns?: number }).columns || 80) - label.length - unit.length - 62)),
        // Cut to the terminal's width instead of switching wrapping off: a crash must not leave the terminal changed.
        linewrap: true,
        hideCursor: false,
        clearOnComplete: true,
      });
      bar.start(total ?? 0, done, payload);
    } else {
      if (total !== undefined) bar.setTotal(total);
      bar.update(done, payload);
    }
  };

  const update = () => {
    if (stopped) return;
    const at = now();
    if (total !== undefined && done >= total) finishedAt ??= at;
    else finishedAt = undefined;
    if (tty) draw(at);
    else if (at - lastLine >= everyMs) {
      lastLine = at;
      line(at);
    }
  };

  return {
    tick(n = 1) {
      done += n;
      update();
    },
    set(d, t) {
      done = d;
      if (t !== undefined) total = t;
      update();
    },
    stop(summary) {
      if (stopped) return;
      stopped = true;
      // Cleared, then the same closing line as without a terminal: what stays on screen is one line per run.
      bar?.stop();
      const at = finishedAt ?? now();
      const of = total !== undefined && done !== total ? `${count(done)}/${count(total)}` : count(done);
      stream.write(`${label}: ${of} ${unit} in ${duration((at - t0) / 1000)}, ${count(rate(at))} ${unit}/s${summary ? `; ${summary}` : ""}\n`);
    },
  };
}

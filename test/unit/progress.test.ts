/**
 * The progress report of the long commands (cmd/progress.ts): without a
 * terminal, plain lines at most every 2 s with the right rate and ETA, and
 * one closing line; on a terminal, cli-progress's bar, cleared at the end
 * with nothing left running.
 */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { duration, progressUnless, startProgress } from "../../cmd/progress.ts";

/** A stream that keeps what is written; `isTTY` as given (a terminal also has a width). */
function fakeStream(isTTY: boolean): Writable & { isTTY: boolean; columns: number; text(): string } {
  const chunks: string[] = [];
  const s = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return Object.assign(s, { isTTY, columns: 120, text: () => chunks.join("") });
}

/** A clock that moves only when told to. */
function fakeClock(): { now: () => number; at(ms: number): void } {
  let t = 0;
  return { now: () => t, at: (ms) => void (t = ms) };
}

const lines = (s: string) => s.split("\n").filter(Boolean);

describe("progress without a terminal", () => {
  it("writes a line every 2 s at most, with the average rate and the ETA it gives", () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const p = startProgress({ label: "replay", total: 100_000, unit: "events", stream, now: clock.now });
    clock.at(500);
    p.set(1_000);
    expect(stream.text()).toBe("");
    clock.at(2_000);
    p.set(20_600);
    // 20,600 in 2 s is 10,300/s; 79,400 left is 7.7 s, said as 8.
    expect(lines(stream.text())).toEqual(["replay: 20,600/100,000 events (20%), 10,300 events/s, ETA 8 s"]);
    clock.at(3_999);
    p.tick(9_400);
    expect(lines(stream.text())).toHaveLength(1);
    clock.at(4_000);
    p.tick(10_000);
    expect(lines(stream.text())[1]).toBe("replay: 40,000/100,000 events (40%), 10,000 events/s, ETA 6 s");
    clock.at(12_000);
    p.set(100_000);
    p.stop("3 rejected");
    expect(lines(stream.text()).slice(2)).toEqual(["replay: 100,000/100,000 events (100%), 8,333 events/s, ETA 0 s", "replay: 100,000 events in 12 s, 8,333 events/s; 3 rejected"]);
  });

  it("throttles calls made on every unit of work", () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const p = startProgress({ label: "simulate", total: 1_000_000, unit: "events", stream, now: clock.now });
    for (let i = 1; i <= 1_000_000; i++) {
      clock.at(i / 100); // 100,000 events/s: ten seconds in all
      p.set(i);
    }
    p.stop();
    const out = lines(stream.text());
    expect(out).toHaveLength(6); // at 2, 4, 6, 8 and 10 s, then the closing line
    expect(out[0]).toBe("simulate: 200,000/1,000,000 events (20%), 100,000 events/s, ETA 8 s");
    expect(out[5]).toBe("simulate: 1,000,000 events in 10 s, 100,000 events/s");
  });

  it("without a total shows no percentage or ETA; a total that turns up later is used", () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const p = startProgress({ label: "bench engine", unit: "events", stream, now: clock.now });
    clock.at(2_000);
    p.set(5_000);
    clock.at(4_000);
    p.set(10_000, 40_000);
    clock.at(5_000);
    p.stop();
    expect(lines(stream.text())).toEqual([
      "bench engine: 5,000 events, 2,500 events/s",
      "bench engine: 10,000/40,000 events (25%), 2,500 events/s, ETA 12 s",
      // Stopped short of the total (a failure, a cut-off): the closing line says so.
      "bench engine: 10,000/40,000 events in 5 s, 2,000 events/s",
    ]);
  });

  it("gives no ETA in the first second, and times the closing line to when the work was done", () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const p = startProgress({ label: "replay", total: 2_000, unit: "events", stream, now: clock.now, everyMs: 100 });
    clock.at(500);
    p.set(1);
    clock.at(1_500);
    p.set(1_500);
    clock.at(2_000);
    p.set(2_000);
    // What the command does after the work (reconciling, say) is not in the figures.
    clock.at(9_000);
    p.stop();
    expect(lines(stream.text())).toEqual([
      "replay: 1/2,000 events (0%), 2 events/s, ETA –",
      "replay: 1,500/2,000 events (75%), 1,000 events/s, ETA 1 s",
      "replay: 2,000/2,000 events (100%), 1,000 events/s, ETA 0 s",
      "replay: 2,000 events in 2 s, 1,000 events/s",
    ]);
  });

  it("stops once, ignores updates after it, and writes nothing with --no-progress", () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const p = startProgress({ label: "replay", unit: "events", total: 10, stream, now: clock.now });
    clock.at(500);
    p.set(10);
    p.stop();
    clock.at(5_000);
    p.set(10);
    p.stop();
    expect(lines(stream.text())).toEqual(["replay: 10 events in 0.5 s, 20 events/s"]);

    const quiet = fakeStream(false);
    const off = progressUnless(true, { label: "replay", unit: "events", stream: quiet });
    off.set(5, 10);
    off.stop("done");
    expect(quiet.text()).toBe("");
  });

  it("says durations the way people read them", () => {
    expect([0.42, 7, 42, 125, 3_780].map(duration)).toEqual(["0.4 s", "7 s", "42 s", "2 min 5 s", "1 h 3 min"]);
  });
});

describe("progress on a terminal", () => {
  it("draws a bar with count, rate and ETA, then clears it and leaves the closing line", async () => {
    const stream = fakeStream(true);
    const clock = fakeClock();
    const p = startProgress({ label: "replay", total: 100_000, unit: "events", stream, now: clock.now });
    expect(stream.text()).toBe("");
    clock.at(2_000);
    p.set(20_000);
    const drawn = stream.text();
    expect(drawn).toContain("replay [");
    expect(drawn).toContain("] 20% 20,000/100,000 events, 10,000/s, ETA 8 s");
    clock.at(10_000);
    p.set(100_000);
    p.stop();
    const out = stream.text();
    // The bar's line is cleared (ESC[2K) before the closing line, which ends the output.
    const cleared = out.lastIndexOf("\x1b[2K");
    expect(cleared).toBeGreaterThan(drawn.length - 1);
    expect(out.slice(cleared)).toMatch(/^\x1b\[2K(\x1b\[\d*G)*replay: 100,000 events in 10 s, 10,000 events\/s\n$/);
    // Nothing keeps drawing: cli-progress redraws every 100 ms while a bar runs.
    await new Promise((r) => setTimeout(r, 300));
    expect(stream.text()).toBe(out);
  });

  it("starts a bar with a total once one is known", () => {
    const stream = fakeStream(true);
    const clock = fakeClock();
    const p = startProgress({ label: "replay", unit: "events", stream, now: clock.now });
    clock.at(1_000);
    p.set(500);
    expect(stream.text()).toContain("replay 500 events, 500/s");
    p.set(600, 1_200);
    expect(stream.text()).toContain("] 50% 600/1,200 events, 600/s, ETA 1 s");
    p.stop();
    expect(stream.text().endsWith("replay: 600/1,200 events in 1 s, 600 events/s\n")).toBe(true);
  });
});

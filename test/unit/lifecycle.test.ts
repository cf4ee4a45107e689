/** Cancellable waits and the rejection sink (src/util/lifecycle.ts), and a retry cut short by its signal. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { retrying, StoppedError } from "../../src/pipeline/retry.ts";
import { background, settlesWithin, sleep, whenAborted } from "../../src/util/lifecycle.ts";

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(() => void process.on("unhandledRejection", onUnhandled));
afterAll(() => void process.off("unhandledRejection", onUnhandled));

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("sleep", () => {
  it("resolves true once the time has passed", async () => {
    expect(await sleep(5)).toBe(true);
  });

  it("resolves false at once when aborted, and leaves no timer behind", async () => {
    const before = timeouts();
    const ac = new AbortController();
    const started = Date.now();
    const slept = sleep(60_000, ac.signal);
    expect(timeouts()).toBe(before + 1);
    ac.abort();
    expect(await slept).toBe(false);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(timeouts()).toBe(before);
  });

  it("does not start a timer for a signal aborted already", async () => {
    const before = timeouts();
    expect(await sleep(60_000, AbortSignal.abort())).toBe(false);
    expect(timeouts()).toBe(before);
  });

  it("whenAborted resolves on abort", async () => {
    const ac = new AbortController();
    const p = whenAborted(ac.signal);
    ac.abort();
    await expect(p).resolves.toBeUndefined();
    await expect(whenAborted(ac.signal)).resolves.toBeUndefined();
  });
});

describe("settlesWithin", () => {
  it("is true for work that settles in time (a rejection included) and clears its timer", async () => {
    const before = timeouts();
    expect(await settlesWithin(Promise.resolve(), 60_000)).toBe(true);
    const failing = Promise.reject(new Error("no"));
    expect(await settlesWithin(failing, 60_000)).toBe(true);
    await failing.catch(() => undefined);
    expect(timeouts()).toBe(before);
  });

  it("is false for work that outlasts the bound", async () => {
    expect(await settlesWithin(new Promise(() => undefined), 10)).toBe(false);
  });
});

describe("background", () => {
  it("logs a rejection with its error (stack and cause) and leaves none unhandled", async () => {
    unhandled.length = 0;
    const logged: { fields: Record<string, unknown>; msg: string }[] = [];
    const log = { error: (fields: Record<string, unknown>, msg: string) => void logged.push({ fields, msg }) };
    const cause = new Error("socket closed");
    await background(Promise.reject(new Error("renewal failed", { cause })), log as never, "lease renewal loop failed", { partition: 3 });
    expect(logged).toHaveLength(1);
    expect(logged[0]!.msg).toBe("lease renewal loop failed");
    expect(logged[0]!.fields.partition).toBe(3);
    const err = logged[0]!.fields.err as Error;
    expect(err.message).toBe("renewal failed");
    expect(err.stack).toBeDefined();
    expect(err.cause).toBe(cause);
    // A non-Error rejection is logged as an Error, so it has a stack too.
    await background(Promise.reject("plain string"), log as never, "x");
    expect((logged[1]!.fields.err as Error).message).toBe("plain string");
    await new Promise((r) => setTimeout(r, 10));
    expect(unhandled).toEqual([]);
  });

  it("resolves (never rejects) when the work succeeds", async () => {
    await expect(background(Promise.resolve(1), { error: () => undefined } as never, "x")).resolves.toBeUndefined();
  });
});

describe("retrying with a signal", () => {
  it("ends a long back-off at once when the signal aborts, with StoppedError", async () => {
    const ac = new AbortController();
    let attempts = 0;
    const started = Date.now();
    const hooks = { isRunning: () => true, maxBackoff: 60_000, baseBackoff: 30_000, maxAttempts: 3, signal: ac.signal, onConflict: () => undefined, onRetry: () => void attempts++ };
    const run = retrying(async () => {
      throw Object.assign(new Error("timeout"), { name: "TimeoutError" });
    }, hooks);
    await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    await expect(run).rejects.toBeInstanceOf(StoppedError);
    expect(attempts).toBe(1);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

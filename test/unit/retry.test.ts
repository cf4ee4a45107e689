import { errors } from "@nats-io/transport-node";
import { JetStreamApiError } from "@nats-io/jetstream";
import { jserrors } from "@nats-io/jetstream/internal";
import { describe, expect, it } from "vitest";
import { isTransient, PoisonError, retrying, StoppedError } from "../../src/pipeline/retry.ts";
import { ConflictError } from "../../src/state/mod.ts";

const hooks = (over: Partial<Parameters<typeof retrying>[1]> = {}) => ({
  isRunning: () => true,
  maxBackoff: 1,
  maxAttempts: 3,
  onConflict: () => undefined,
  onRetry: () => undefined,
  ...over,
});

describe("retrying", () => {
  it("tells connection trouble from failures of the work itself", () => {
    expect(isTransient(new errors.TimeoutError())).toBe(true);
    expect(isTransient(new errors.ClosedConnectionError())).toBe(true);
    expect(isTransient(new Error("wrapped", { cause: new errors.TimeoutError() }))).toBe(true);
    expect(isTransient(new SyntaxError("Unexpected token n in JSON"))).toBe(false);
    expect(isTransient(new Error("maximum payload exceeded"))).toBe(false);
    // A node that is restarting has no JetStream responder yet; it is not the work's fault.
    const noResponders = new errors.RequestError("no responders", { cause: new errors.NoRespondersError("$JS.API.INFO") });
    expect(isTransient(new jserrors.JetStreamNotEnabled("jetstream is not enabled", { cause: noResponders }))).toBe(true);
    // Named like one, but not one: names and text decide nothing.
    const fake = new Error("jetstream is not enabled");
    fake.name = "JetStreamNotEnabled";
    expect(isTransient(fake)).toBe(false);
  });

  it("turns a JetStream refusal that will never succeed into poison after maxAttempts, instead of blocking", async () => {
    let calls = 0;
    const err = await retrying(async () => {
      calls++;
      throw new JetStreamApiError({ code: 400, err_code: 10054, description: "message size exceeds maximum allowed" });
    }, hooks()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoisonError);
    expect(calls).toBe(3);
    expect((err as PoisonError).cause).toBeInstanceOf(JetStreamApiError);
    expect((err as PoisonError).history[0]).toMatch(/JetStreamApiError: message size exceeds maximum allowed/);
  });

  it("retries a cluster that is electing a leader for as long as it takes", async () => {
    let calls = 0;
    const v = await retrying(async () => {
      if (++calls < 6) throw new JetStreamApiError({ code: 503, err_code: 10008, description: "JetStream system temporarily unavailable" });
      return calls;
    }, hooks());
    expect(v).toBe(6);
  });

  it("retries transient failures for as long as they last, keeping the result", async () => {
    let calls = 0;
    const v = await retrying(async () => {
      if (++calls < 8) throw new errors.TimeoutError();
      return "done";
    }, hooks());
    expect(v).toBe("done");
    expect(calls).toBe(8);
  });

  it("gives up on other failures after maxAttempts with their history", async () => {
    let calls = 0;
    const err = await retrying(async () => {
      calls++;
      throw new SyntaxError(`bad ${calls}`);
    }, hooks()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoisonError);
    expect((err as PoisonError).history.map((h) => h.replace(/^\S+ /, ""))).toEqual(["SyntaxError: bad 1", "SyntaxError: bad 2", "SyntaxError: bad 3"]);
  });

  it("retries compare-and-set conflicts at once and stops when the worker stops", async () => {
    let conflicts = 0;
    let calls = 0;
    await retrying(async () => {
      if (++calls < 3) throw new ConflictError("k");
    }, hooks({ onConflict: () => conflicts++ }));
    expect(conflicts).toBe(2);
    let running = true;
    const stopped = retrying(async () => {
      running = false;
      throw new errors.TimeoutError();
    }, hooks({ isRunning: () => running }));
    await expect(stopped).rejects.toBeInstanceOf(StoppedError);
  });
});

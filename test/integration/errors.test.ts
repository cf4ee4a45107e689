/**
 * The error predicates of src/nats/errors.ts on what a real nats-server
 * answers: a refusal that will never succeed is poison (after its retries),
 * a server that does not answer is transient.
 */
import { randomUUID } from "node:crypto";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isCasFailure, isNotFound, isTooLarge, isTransient, JsRequests } from "../../src/nats/mod.ts";
import { PoisonError, retrying } from "../../src/pipeline/retry.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";

const enc = new TextEncoder();
const hooks = { isRunning: () => true, maxBackoff: 1, maxAttempts: 3, onConflict: () => undefined, onRetry: () => undefined };

describe("error predicates against a real server", () => {
  let nats: TestNats;
  let req: JsRequests;
  const stream = `ERR_${randomUUID().slice(0, 8)}`;
  const subject = `errs.${stream}`;
  beforeAll(async () => {
    nats = await startTestNats(1);
    await nats.jsm.streams.add({ name: stream, subjects: [`${subject}.>`], max_msg_size: 64 });
    req = new JsRequests(nats.nc, 300);
  });
  afterAll(async () => {
    req?.close();
    await nats?.cleanup();
  });

  it("a message over the stream's max_msg_size is too large, not transient, and becomes poison after its retries", async () => {
    const big = enc.encode("x".repeat(200));
    // Through the engine's request path and through nats.js: the same answer, the same verdict.
    for (const publish of [() => req.publish(`${subject}.a`, big), () => nats.js.publish(`${subject}.a`, big)]) {
      const err = await publish().catch((e: unknown) => e);
      expect(isTooLarge(err), String(err)).toBe(true);
      expect(isTransient(err)).toBe(false);
    }
    let calls = 0;
    const poison = await retrying(() => (calls++, req.publish(`${subject}.a`, big)), hooks).catch((e: unknown) => e);
    expect(poison).toBeInstanceOf(PoisonError);
    expect(calls).toBe(3);
  });

  it("a payload over the server's max_payload is refused by the client as too large", async () => {
    const err = await req.publish(`${subject}.a`, new Uint8Array(2 * 1024 * 1024)).catch((e: unknown) => e);
    expect(isTooLarge(err), String(err)).toBe(true);
    expect(isTransient(err)).toBe(false);
  });

  it("a publish with a wrong expected last sequence, and a KV create over an existing key, are compare-and-set failures, not transient", async () => {
    await req.publish(`${subject}.k`, enc.encode("1"));
    const stale = await req.publish(`${subject}.k`, enc.encode("2"), { lastSubjectSeq: 0 }).catch((e: unknown) => e);
    expect(isCasFailure(stale), String(stale)).toBe(true);
    expect(isTransient(stale)).toBe(false);
    const kv = await new Kvm(nats.nc).create(`errs_${randomUUID().slice(0, 8)}`, { history: 1 });
    await kv.create("k", enc.encode("1"));
    const exists = await kv.create("k", enc.encode("2")).catch((e: unknown) => e);
    expect(isCasFailure(exists), String(exists)).toBe(true);
    expect(isTransient(exists)).toBe(false);
  });

  it("a stream or consumer that is not there is not found, and not transient", async () => {
    const noStream = await nats.jsm.streams.info(`NOPE_${stream}`).catch((e: unknown) => e);
    const noConsumer = await nats.jsm.consumers.info(stream, "nope").catch((e: unknown) => e);
    for (const e of [noStream, noConsumer]) {
      expect(isNotFound(e), String(e)).toBe(true);
      expect(isTransient(e)).toBe(false);
    }
  });

  it("no responders and a timeout are transient", async () => {
    const none = await req.publish(`nobody.${stream}`, enc.encode("x")).catch((e: unknown) => e);
    expect(String(none)).toMatch(/no responders/);
    expect(isTransient(none)).toBe(true);
    const viaNatsJs = await nats.nc.request(`nobody.${stream}`, enc.encode("x"), { timeout: 500 }).catch((e: unknown) => e);
    expect(isTransient(viaNatsJs), String(viaNatsJs)).toBe(true);
    const mute = nats.nc.subscribe(`mute.${stream}`);
    const silent = await req.publish(`mute.${stream}`, enc.encode("x")).catch((e: unknown) => e);
    expect((silent as Error).name).toBe("TimeoutError");
    expect(isTransient(silent)).toBe(true);
    const silentNatsJs = await nats.nc.request(`mute.${stream}`, enc.encode("x"), { timeout: 200 }).catch((e: unknown) => e);
    expect(isTransient(silentNatsJs), String(silentNatsJs)).toBe(true);
    mute.unsubscribe();
  });

  it("requests cut short by a server restart are transient", async () => {
    const mute = nats.nc.subscribe(`mute2.${stream}`);
    const pending = [nats.nc.request(`mute2.${stream}`, enc.encode("x"), { timeout: 2_000 }).catch((e: unknown) => e), req.publish(`mute2.${stream}`, enc.encode("x")).catch((e: unknown) => e)];
    await nats.restart();
    for (const err of await Promise.all(pending)) expect(isTransient(err), String(err)).toBe(true);
    mute.unsubscribe();
  });
});

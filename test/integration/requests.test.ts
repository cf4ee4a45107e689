import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Buckets, ensureTopology, FastKv, isCasFailure, isTransient, JsRequests, Streams } from "../../src/nats/mod.ts";
import { testConfig } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("JsRequests and FastKv against a real server", () => {
  let nats: TestNats;
  let req: JsRequests;
  beforeAll(async () => {
    nats = await startTestNats(2);
    await ensureTopology(nats.nc, nats.jsm, testConfig(nats.url, { partitions: 2 }));
    req = new JsRequests(nats.nc, 300);
  });
  afterAll(async () => {
    req?.close();
    await nats?.cleanup();
  });

  it("publishes with a msg id, and the stream drops the same id again", async () => {
    const a = await req.publish("ach.unlocked.acme.u1", enc.encode("{}"), { msgID: "ul_test_1" });
    const b = await req.publish("ach.unlocked.acme.u1", enc.encode("{}"), { msgID: "ul_test_1" });
    expect(a).toMatchObject({ stream: Streams.Unlocks, duplicate: false });
    expect(b).toMatchObject({ stream: Streams.Unlocks, seq: a.seq, duplicate: true });
  });

  it("does KV create, compare-and-set update and reads like nats.js's bucket", async () => {
    const kv = await new Kvm(nats.nc).open(Buckets.State);
    const fast = await FastKv.open(kv, req);
    expect(await fast.get("acme.fresh")).toBeNull();
    const r1 = await fast.create("acme.fresh", enc.encode("one"));
    // nats.js reads what it wrote, at that revision.
    const e1 = await kv.get("acme.fresh");
    expect(e1).toMatchObject({ revision: r1, operation: "PUT" });
    expect(dec.decode(e1!.value)).toBe("one");
    // A second create and an update from a stale revision fail as compare-and-set failures: retried by the caller as a
    // conflict (reload, recompute), not as connection trouble.
    const created = await fast.create("acme.fresh", enc.encode("two")).catch((e: unknown) => e);
    expect(isCasFailure(created)).toBe(true);
    const r2 = await fast.update("acme.fresh", enc.encode("two"), r1);
    const stale = await fast.update("acme.fresh", enc.encode("three"), r1).catch((e: unknown) => e);
    expect(isCasFailure(stale)).toBe(true);
    expect(isTransient(stale)).toBe(false);
    const got = await fast.get("acme.fresh");
    expect(got).toMatchObject({ revision: r2, operation: "PUT" });
    expect(dec.decode(got!.value)).toBe("two");
    // A deleted key reads as a delete marker, and create writes over it (as nats.js's does).
    await kv.delete("acme.fresh");
    expect(await fast.get("acme.fresh")).toMatchObject({ operation: "DEL" });
    const r3 = await fast.create("acme.fresh", enc.encode("again"));
    expect(await fast.get("acme.fresh")).toMatchObject({ revision: r3, operation: "PUT" });
    const r4 = await fast.put("acme.fresh", enc.encode("put"));
    expect(r4).toBeGreaterThan(r3);
  });

  it("reads a bucket that allows direct gets the same way", async () => {
    const kv = await new Kvm(nats.nc).create("direct_test", { history: 1, allow_direct: true });
    const fast = await FastKv.open(kv, req);
    expect(await fast.get("k")).toBeNull();
    const r1 = await fast.create("k", enc.encode("v1"));
    const got = await fast.get("k");
    expect(got).toMatchObject({ revision: r1, operation: "PUT", length: 2 });
    expect(dec.decode(got!.value)).toBe("v1");
    await kv.delete("k");
    expect(await fast.get("k")).toMatchObject({ operation: "DEL" });
  });

  it("fails a publish no stream takes with no responders, and one nobody answers with a timeout, both retried", async () => {
    const none = await req.publish("nobody.listens.here", enc.encode("x")).catch((e: unknown) => e);
    expect(String(none)).toMatch(/no responders/);
    expect(isTransient(none)).toBe(true);
    // A plain subscriber that never answers: no 503, so the request waits for its timeout.
    const mute = nats.nc.subscribe("mute.subject");
    const t0 = Date.now();
    const silent = await req.publish("mute.subject", enc.encode("x")).catch((e: unknown) => e);
    expect((silent as Error).name).toBe("TimeoutError");
    expect(isTransient(silent)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(req.inFlight).toBe(0);
    mute.unsubscribe();
  });
});

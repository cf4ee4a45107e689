/** The derived timings: computed once from the config, their relations checked, a broken one named by its settings. */
import { describe, expect, it } from "vitest";
import { configError } from "../helpers/config.ts";
import { compileConfig, deriveTimings, loadConfig, timingIssues, type Config } from "../../src/config/mod.ts";

const defaults = (overrides = {}): Config => loadConfig({}, overrides);

describe("compileConfig", () => {
  it("derives every timing from the defaults, and the defaults satisfy every relation", () => {
    const t = compileConfig(defaults());
    expect(t).toMatchObject({
      leaseTtl: 10_000,
      renewEvery: 2_000,
      fence: 5_000,
      renewTimeoutMin: 2_000,
      tick: 3_333,
      settle: 10_000,
      requestTimeout: 5_000,
      requestSweep: 1_000,
      pullAhead: 1_000,
      retryBase: 25,
      retryMax: 5_000,
      restartBackoff: 1_000,
      ackWait: 30_000,
      connectTimeout: 10_000,
      connectRetry: 250,
      startupWait: 30_000,
      shutdownGrace: 10_000,
    });
    expect(timingIssues(t)).toEqual([]);
    expect(2 * t.renewEvery).toBeLessThan(t.fence);
    expect(t.fence).toBeLessThan(t.leaseTtl);
    expect(t.tick).toBeLessThan(t.fence);
    expect(t.requestTimeout).toBeLessThan(t.ackWait);
    expect(t.retryMax).toBeLessThan(t.ackWait);
  });

  it("follows the settings it derives from", () => {
    const t = compileConfig(defaults({ leases: { ttl: "2s" }, worker: { batchSize: 20, maxBackoff: "1s" }, shutdownGrace: "3s" }));
    expect(t).toMatchObject({ renewEvery: 400, fence: 1_000, tick: 666, settle: 2_000, pullAhead: 100, retryMax: 1_000, shutdownGrace: 3_000 });
  });

  it("accepts the shortest lease TTL it documents (500ms)", () => {
    expect(timingIssues(deriveTimings(defaults({ leases: { ttl: "500ms" } })))).toEqual([]);
  });

  it("refuses a lease TTL too short for renewals and ticks before the fence, naming leases.ttl and where it came from", () => {
    const e = configError(() => loadConfig({ ACH_LEASE_TTL: "300ms" }));
    expect(e.message).toContain("leases.ttl (from ACH_LEASE_TTL)");
    expect(e.message).toMatch(/renewals .* before the fence closes/);
    expect(e.message).toMatch(/tick .* before the fence closes/);
  });

  it("refuses a retry pause as long as the ack wait, naming both settings", () => {
    const e = configError(() => defaults({ worker: { maxBackoff: "30s", ackWait: "30s" } }));
    expect(e.message).toMatch(/worker\.maxBackoff.*, worker\.ackWait.*: worker\.maxBackoff \(30000 ms\) must be shorter than worker\.ackWait/);
  });

  it("refuses an ack wait within the request timeout, naming worker.ackWait", () => {
    const e = configError(() => defaults({ worker: { ackWait: "4s", maxBackoff: "1s" }, reorder: { window: "1s" } }));
    expect(e.message).toContain("worker.ackWait");
    expect(e.message).toContain("request timeout");
  });

  it("throws the same from compileConfig for a config object that breaks a relation", () => {
    const bad = { ...defaults(), leases: { ttl: 300 } } as Config;
    const e = configError(() => compileConfig(bad));
    expect(e.message).toContain("leases.ttl");
  });
});

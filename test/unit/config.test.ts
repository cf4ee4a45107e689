import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configError } from "../helpers/config.ts";
import { ConfigSchema, loadConfig, parseDuration, type Config } from "../../src/config/mod.ts";

let dir: string;
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "achd-config-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a config file and returns its path. */
function file(text: string): string {
  const p = join(dir, `achd${n++}.yaml`);
  writeFileSync(p, text);
  return p;
}

/** loadConfig with ACH_CONFIG at a fresh file holding `yaml`. */
function load(yaml: string, env: NodeJS.ProcessEnv = {}, overrides = {}): Config {
  return loadConfig({ ACH_CONFIG: file(yaml), ...env }, overrides);
}

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["2m", 120_000],
    ["24h", 86_400_000],
    ["7d", 604_800_000],
    ["1.5s", 1500],
    [" 10s ", 10_000],
    ["0s", 0],
  ] as const)("parses %j", (s, ms) => {
    expect(parseDuration(s)).toBe(ms);
  });

  it("takes numbers as milliseconds", () => {
    expect(parseDuration(250)).toBe(250);
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration(-1)).toBeUndefined();
    expect(parseDuration(Number.NaN)).toBeUndefined();
    expect(parseDuration(Number.POSITIVE_INFINITY)).toBeUndefined();
  });

  it.each(["", "10", "2 minutes", "2M", "-1s", "s", "1w", "1h30m"])("rejects %j", (s) => {
    expect(parseDuration(s)).toBeUndefined();
  });
});

describe("loadConfig defaults", () => {
  it("fills every default from an empty file", () => {
    const c = load("");
    expect(c.partitions).toBe(8);
    expect(c.http).toEqual({
      enabled: true,
      host: "127.0.0.1",
      port: 8080,
      maxBatch: 500,
      maxBodyBytes: 1_048_576,
      maxDepth: 32,
      requestTimeout: 10_000,
      rateLimit: { perKey: 100, perTenant: 300, window: 1000, authFailures: 60 },
      sse: { heartbeat: 15_000, maxBufferedBytes: 1_048_576, maxPerTenant: 2_000 },
      quota: { eventsPerSecond: 2000, burst: 10_000 },
    });
    expect(c.metrics).toEqual({ enabled: true, maxTenants: 100, maxAchievements: 100, access: "key", host: "127.0.0.1", port: 9464, publishInterval: 1000 });
    expect(c.auth.mode).toBe("keys");
    expect(c.nats.credentials).toBeUndefined();
    expect(c.events).toEqual({ maxBytes: 65_536, maxAge: 7 * 86_400_000, duplicateWindow: 120_000 });
    expect(c.worker.ackWait).toBe(30_000);
    expect(c.worker.recentIds).toBe(64);
    expect(c.worker.enabled).toBe(true);
    expect(c.nats.url).toBeUndefined();
    expect(c.nats.embedded.port).toBe(4222);
    expect(c.nats.connectTimeout).toBe(10_000);
    expect(c.unlocks.duplicateWindow).toBe(86_400_000);
    expect(c.log.level).toBe("info");
    expect(c.rules).toBe("config/rules");
    expect(c.dataDir).toBe("./data");
  });

  it("gives the same result for an empty file and an empty object", () => {
    expect(load("{}\n")).toEqual(load(""));
    expect(load("{}\n")).toEqual(ConfigSchema.parse({}));
  });
});

describe("auth", () => {
  it("refuses auth.mode none unless the API and the embedded server listen on loopback only", () => {
    expect(() => load("auth: { mode: none }\nhttp: { host: 0.0.0.0 }\n")).toThrow(/auth\.mode.*local development only.*0\.0\.0\.0/s);
    expect(() => load("auth: { mode: none }\nnats: { embedded: { host: 192.0.2.1 } }\n")).toThrow(/auth\.mode.*embedded nats-server.*192\.0\.2\.1/s);
    expect(() => loadConfig({ ACH_CONFIG: "", ACH_AUTH: "none", ACH_HTTP_HOST: "0.0.0.0" })).toThrow(/auth\.mode \(from ACH_AUTH\)/);
    for (const host of ["127.0.0.1", "127.3.2.1", "localhost", "::1"]) expect(load(`auth: { mode: none }\nhttp: { host: "${host}" }\n`).auth.mode).toBe("none");
    // With an external server, only the API's address matters; without the API, nothing listens.
    expect(load("auth: { mode: none }\nhttp: { enabled: false, host: 0.0.0.0 }\n").auth.mode).toBe("none");
    expect(load("http: { host: 0.0.0.0 }\n").auth.mode).toBe("keys");
  });

  it("refuses a quota burst smaller than a full batch, and an unknown auth mode", () => {
    expect(() => load("http: { maxBatch: 100, quota: { burst: 50 } }\n")).toThrow(/http\.quota\.burst.*at least http\.maxBatch \(100\)/);
    expect(load("http: { maxBatch: 100, quota: { eventsPerSecond: 0, burst: 0 } }\n").http.quota.burst).toBe(0);
    expect(() => load("auth: { mode: open }\n")).toThrow(/auth\.mode/);
  });
});

describe("loadConfig file", () => {
  it("reads values from the file and parses durations", () => {
    const c = load(
      [
        "partitions: 16",
        "http:",
        "  port: 9090",
        "worker:",
        "  ackWait: 2m",
        "  maxBackoff: 500ms",
        "events:",
        "  maxAge: 0",
        "  duplicateWindow: 1h",
        "nats:",
        "  url: nats://example:4222",
        "",
      ].join("\n"),
    );
    expect(c.partitions).toBe(16);
    expect(c.http.port).toBe(9090);
    expect(c.http.host).toBe("127.0.0.1");
    expect(c.worker.ackWait).toBe(120_000);
    expect(c.worker.maxBackoff).toBe(500);
    expect(c.events.maxAge).toBe(0);
    expect(c.events.duplicateWindow).toBe(3_600_000);
    expect(c.nats.url).toBe("nats://example:4222");
  });

  it("rejects an unknown key, naming it and the file", () => {
    const p = file("partitions: 4\nfoo: 1\n");
    const e = configError(() => loadConfig({ ACH_CONFIG: p }));
    expect(e.message).toContain("foo");
    expect(e.message).toContain(p);

    const nested = configError(() => load("http:\n  prot: 80\n"));
    expect(nested.message).toContain("http");
    expect(nested.message).toContain("prot");
  });

  it("rejects a bad value in the file, naming the field", () => {
    const e = configError(() => load("worker:\n  ackWait: soon\n"));
    expect(e.message).toContain("worker.ackWait");
    expect(e.message).toContain("soon");
    const p = configError(() => load("partitions: 0\n"));
    expect(p.message).toContain("partitions");
    expect(configError(() => load("log:\n  level: loud\n")).message).toContain("log.level");
  });

  it("lists every bad field", () => {
    const e = configError(() => load("partitions: 0\nhttp:\n  port: 70000\n"));
    expect(e.message).toContain("partitions");
    expect(e.message).toContain("http.port");
  });

  it("checks cross-field rules", () => {
    expect(configError(() => load("worker:\n  ackWait: 500ms\n")).message).toContain("worker.ackWait");
    expect(configError(() => load("events:\n  maxAge: 1m\n  duplicateWindow: 2m\n")).message).toContain("events.duplicateWindow");
  });

  it("rejects a file that is not YAML", () => {
    const p = file("partitions: [\n");
    const e = configError(() => loadConfig({ ACH_CONFIG: p }));
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/cannot parse/);
  });

  it("rejects ACH_CONFIG pointing at a missing file", () => {
    const missing = join(dir, "does-not-exist.yaml");
    const e = configError(() => loadConfig({ ACH_CONFIG: missing }));
    expect(e.message).toContain(missing);
    expect(e.message).toContain("ACH_CONFIG");
  });
});

describe("loadConfig environment", () => {
  it("applies PORT, ACH_PARTITIONS, NATS_URL and LOG_LEVEL", () => {
    const c = load("", { PORT: "9999", ACH_PARTITIONS: "32", NATS_URL: "nats://a:4222,nats://b:4222", LOG_LEVEL: "debug" });
    expect(c.http.port).toBe(9999);
    expect(c.partitions).toBe(32);
    expect(c.nats.url).toBe("nats://a:4222,nats://b:4222");
    expect(c.log.level).toBe("debug");
  });

  it("lets the environment override the file and overrides override both", () => {
    const yaml = "partitions: 4\nhttp:\n  port: 7000\n  host: 0.0.0.0\n";
    const c = load(yaml, { ACH_PARTITIONS: "12" });
    expect(c.partitions).toBe(12);
    expect(c.http.port).toBe(7000);
    expect(c.http.host).toBe("0.0.0.0");
    const o = load(yaml, { ACH_PARTITIONS: "12", PORT: "7001" }, { partitions: 2, http: { maxBatch: 10 } });
    expect(o.partitions).toBe(2);
    expect(o.http).toMatchObject({ port: 7001, host: "0.0.0.0", maxBatch: 10 });
  });

  it("parses booleans and durations from the environment", () => {
    const c = load("", { ACH_HTTP_ENABLED: "false", ACH_WORKER_ENABLED: "0", ACH_ACK_WAIT: "2m" });
    expect(c.http.enabled).toBe(false);
    expect(c.worker.enabled).toBe(false);
    expect(c.worker.ackWait).toBe(120_000);
    const t = load("http:\n  enabled: false\n", { ACH_HTTP_ENABLED: "1" });
    expect(t.http.enabled).toBe(true);
  });

  it("ignores empty environment variables", () => {
    const c = load("partitions: 4\n", { ACH_PARTITIONS: "", PORT: "" });
    expect(c.partitions).toBe(4);
    expect(c.http.port).toBe(8080);
  });

  it("names the field and the variable of an out-of-range value", () => {
    const e = configError(() => load("", { ACH_PARTITIONS: "0" }));
    expect(e.message).toContain("partitions");
    expect(e.message).toContain("ACH_PARTITIONS");
    const big = configError(() => load("", { ACH_PARTITIONS: "2000" }));
    expect(big.message).toContain("ACH_PARTITIONS");
    const frac = configError(() => load("", { ACH_PARTITIONS: "1.5" }));
    expect(frac.message).toContain("ACH_PARTITIONS");
  });

  it("names the field and the variable of a value that is not a number", () => {
    const e = configError(() => load("", { PORT: "abc" }));
    expect(e.message).toContain("PORT");
    expect(e.message).toContain("http.port");
    expect(e.message).toContain("abc");
  });

  it("names the variable of a bad boolean, duration or level", () => {
    const b = configError(() => load("", { ACH_WORKER_ENABLED: "yes" }));
    expect(b.message).toContain("ACH_WORKER_ENABLED");
    expect(b.message).toContain("worker.enabled");
    const d = configError(() => load("", { ACH_ACK_WAIT: "forever" }));
    expect(d.message).toContain("ACH_ACK_WAIT");
    expect(d.message).toContain("worker.ackWait");
    const short = configError(() => load("", { ACH_ACK_WAIT: "500ms" }));
    expect(short.message).toContain("ACH_ACK_WAIT");
    const l = configError(() => load("", { LOG_LEVEL: "verbose" }));
    expect(l.message).toContain("LOG_LEVEL");
    expect(l.message).toContain("log.level");
  });

  it("attributes a bad file value to the file, not the environment", () => {
    const p = file("http:\n  port: 99999\n");
    const e = configError(() => loadConfig({ ACH_CONFIG: p, ACH_PARTITIONS: "4" }));
    expect(e.message).toContain("http.port");
    expect(e.message).toContain(p);
    expect(e.message).not.toContain("ACH_PARTITIONS");
  });

  it("reports every bad variable", () => {
    const e = configError(() => load("", { PORT: "abc", ACH_NATS_PORT: "x", ACH_HTTP_ENABLED: "maybe" }));
    expect(e.message).toContain("http.port (from PORT)");
    expect(e.message).toContain("nats.embedded.port (from ACH_NATS_PORT)");
    expect(e.message).toContain("ACH_HTTP_ENABLED");
  });
});

describe("loadConfig regressions", () => {
  it("refuses a file that is not a mapping, even with environment overrides", () => {
    expect(configError(() => load("hello", { PORT: "1" })).message).toMatch(/expected a mapping/);
  });

  it("refuses numbers that are not plain integers", () => {
    expect(configError(() => load("", { PORT: " " })).message).toMatch(/PORT/);
    expect(configError(() => load("", { ACH_PARTITIONS: "0x10" })).message).toMatch(/ACH_PARTITIONS.*not a whole number/);
  });

  it("blames overrides, not the environment, for a value the overrides set", () => {
    const msg = configError(() => load("", { ACH_PARTITIONS: "3" }, { partitions: 0 })).message;
    expect(msg).toMatch(/partitions/);
    expect(msg).not.toMatch(/ACH_PARTITIONS/);
  });

  it("treats an empty ACH_CONFIG as unset", () => {
    expect(loadConfig({ ACH_CONFIG: "" }).partitions).toBe(8);
  });
});

import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { adminKeyFile } from "../../src/auth/mod.ts";
import { loadConfig, type Config, type ConfigInput } from "../../src/config/mod.ts";
import { startEngine, type Engine } from "../../src/engine.ts";
import { createLogger } from "../../src/util/log.ts";

/** Path of a file under test/fixtures. */
export function fixture(path: string): string {
  return fileURLToPath(new URL(`../fixtures/${path}`, import.meta.url));
}

/** A test configuration against `natsUrl`: API on a free port, a data folder of its own (for the admin key), quiet logs. */
export function testConfig(natsUrl: string, overrides: ConfigInput = {}): Config {
  return loadConfig(
    { ACH_CONFIG: fixture("achd.test.yaml") },
    {
      nats: { url: natsUrl },
      dataDir: mkdtempSync(join(tmpdir(), "achd-data-")),
      rules: fixture("rules"),
      log: { level: (process.env.ACH_TEST_LOG as "info" | undefined) ?? "silent" },
      ...overrides,
      // Merged, not replaced: a test that sets some http or worker fields keeps a free port (never a fixed 8080
      // that another test file running at the same time also binds) and the short retries.
      http: { port: 0, ...overrides.http },
      worker: { maxAttempts: 3, maxBackoff: 200, ...overrides.worker },
    },
  );
}

/** The admin key of each test server, by NATS URL: only the first engine on a server writes one. */
const adminKeys = new Map<string, string>();

/** Starts an in-process engine for a test. */
export async function startTestEngine(natsUrl: string, overrides: ConfigInput = {}): Promise<Engine> {
  const config = testConfig(natsUrl, overrides);
  const engine = await startEngine(config, createLogger(config.log.level));
  if (existsSync(adminKeyFile(config.dataDir))) adminKeys.set(natsUrl, adminKey(config.dataDir));
  return engine;
}

/** The admin key a (first) engine wrote into its data folder at start. */
export function adminKey(dataDir: string): string {
  return readFileSync(adminKeyFile(dataDir), "utf8").trim();
}

/** `fetch` against an engine's API with its admin key (or `key`). */
export function apiFetch(engine: Engine, path: string, init: RequestInit = {}, key = adminKeys.get(engine.natsUrl) ?? adminKey(engine.config.dataDir)): Promise<Response> {
  return fetch(`${engine.httpUrl}${path}`, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${key}` } });
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

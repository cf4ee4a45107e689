import { fileURLToPath } from "node:url";
import { loadConfig, type Config, type ConfigInput } from "../../src/config/mod.ts";
import { startEngine, type Engine } from "../../src/engine.ts";
import { createLogger } from "../../src/util/log.ts";

/** Path of a file under test/fixtures. */
export function fixture(path: string): string {
  return fileURLToPath(new URL(`../fixtures/${path}`, import.meta.url));
}

/** A test configuration against `natsUrl`: API on a free port, quiet logs. */
export function testConfig(natsUrl: string, overrides: ConfigInput = {}): Config {
  return loadConfig(
    { ACH_CONFIG: fixture("achd.test.yaml") },
    {
      nats: { url: natsUrl },
      http: { port: 0 },
      rules: fixture("rules"),
      log: { level: (process.env.ACH_TEST_LOG as "info" | undefined) ?? "silent" },
      worker: { maxAttempts: 3, maxBackoff: 200 },
      ...overrides,
    },
  );
}

/** Starts an in-process engine for a test. */
export async function startTestEngine(natsUrl: string, overrides: ConfigInput = {}): Promise<Engine> {
  const config = testConfig(natsUrl, overrides);
  return startEngine(config, createLogger(config.log.level));
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

import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { ConfigSchema, type Config, type ConfigInput } from "./schema.ts";
import { deriveTimings, timingIssues, type Timings } from "./timings.ts";

/** A configuration that cannot be used; the message names every bad field. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Environment variables and the config field each one sets. */
export const ENV_FIELDS: Record<string, { path: string[]; type: "string" | "number" | "boolean" }> = {
  NATS_URL: { path: ["nats", "url"], type: "string" },
  NATS_CREDS: { path: ["nats", "credentials"], type: "string" },
  ACH_AUTH: { path: ["auth", "mode"], type: "string" },
  ACH_NATS_PORT: { path: ["nats", "embedded", "port"], type: "number" },
  ACH_NATS_SYNC: { path: ["nats", "embedded", "sync"], type: "string" },
  ACH_REPLICAS: { path: ["nats", "replicas"], type: "number" },
  ACH_DATA_DIR: { path: ["dataDir"], type: "string" },
  ACH_PARTITIONS: { path: ["partitions"], type: "number" },
  ACH_RULES: { path: ["rules"], type: "string" },
  PORT: { path: ["http", "port"], type: "number" },
  ACH_HTTP_HOST: { path: ["http", "host"], type: "string" },
  ACH_HTTP_ENABLED: { path: ["http", "enabled"], type: "boolean" },
  ACH_WORKER_ENABLED: { path: ["worker", "enabled"], type: "boolean" },
  ACH_WORKER_ID: { path: ["worker", "id"], type: "string" },
  ACH_LEASE_TTL: { path: ["leases", "ttl"], type: "string" },
  ACH_CACHE_MB: { path: ["worker", "cacheMB"], type: "number" },
  ACH_ACK_WAIT: { path: ["worker", "ackWait"], type: "string" },
  ACH_REORDER_WINDOW: { path: ["reorder", "window"], type: "string" },
  ACH_SHUTDOWN_GRACE: { path: ["shutdownGrace"], type: "string" },
  ACH_METRICS_PORT: { path: ["metrics", "port"], type: "number" },
  ACH_METRICS_ACCESS: { path: ["metrics", "access"], type: "string" },
  ACH_METRICS_ENABLED: { path: ["metrics", "enabled"], type: "boolean" },
  ACH_WEBHOOKS_ENABLED: { path: ["webhooks", "enabled"], type: "boolean" },
  ACH_WEBHOOKS_RETRY_FOR: { path: ["webhooks", "retryFor"], type: "string" },
  ACH_WEBHOOKS_ALLOW_PRIVATE: { path: ["webhooks", "allowPrivate"], type: "boolean" },
  LOG_LEVEL: { path: ["log", "level"], type: "string" },
};

function setPath(obj: Record<string, unknown>, path: string[], value: unknown): void {
  let o = obj;
  for (const p of path.slice(0, -1)) {
    if (typeof o[p] !== "object" || o[p] === null) o[p] = {};
    o = o[p] as Record<string, unknown>;
  }
  o[path[path.length - 1]!] = value;
}

function fromEnv(env: NodeJS.ProcessEnv, into: Record<string, unknown>, sources: Map<string, string>): string[] {
  const errors: string[] = [];
  for (const [name, { path, type }] of Object.entries(ENV_FIELDS)) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    let value: unknown = raw;
    if (type === "number") {
      value = Number(raw);
      if (!/^-?\d+$/.test(raw.trim())) errors.push(`${path.join(".")} (from ${name}): not a whole number: ${JSON.stringify(raw)}`);
    } else if (type === "boolean") {
      if (!["true", "false", "1", "0"].includes(raw)) errors.push(`${path.join(".")} (from ${name}): use true or false, not ${JSON.stringify(raw)}`);
      value = raw === "true" || raw === "1";
    }
    setPath(into, path, value);
    sources.set(path.join("."), name);
  }
  return errors;
}

/**
 * Loads the configuration: the YAML file (`ACH_CONFIG`, default
 * `config/achd.yaml`, optional), then environment variables, then `overrides`
 * (used by tests and subcommands). Throws {@link ConfigError} naming each
 * wrong field and where its value came from.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: ConfigInput = {}): Config {
  const file = env.ACH_CONFIG || "config/achd.yaml";
  let base: Record<string, unknown> = {};
  if (existsSync(file)) {
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(file, "utf8"));
    } catch (err) {
      throw new ConfigError(`config file ${file}: cannot parse: ${(err as Error).message}`);
    }
    if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) {
      throw new ConfigError(`config file ${file}: expected a mapping of settings (e.g. "partitions: 8"), not ${Array.isArray(parsed) ? "a list" : typeof parsed}`);
    }
    base = (parsed as Record<string, unknown> | null) ?? {};
  } else if (env.ACH_CONFIG) {
    throw new ConfigError(`config file ${file} (from ACH_CONFIG) does not exist`);
  }
  const sources = new Map<string, string>();
  const errors = fromEnv(env, base, sources);
  merge(base, overrides as Record<string, unknown>, [], sources);
  if (errors.length) throw new ConfigError(`invalid configuration:\n  ${errors.join("\n  ")}`);
  const parsed = ConfigSchema.safeParse(base);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const path = i.path.join(".") || "(root)";
      const from = sources.get(path) ? ` (from ${sources.get(path)})` : existsSync(file) ? ` (in ${file})` : "";
      return `${path}${from}: ${i.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join("\n  ")}`);
  }
  const issues = timingIssues(deriveTimings(parsed.data));
  if (issues.length) {
    const from = (path: string) => (sources.get(path) ? ` (from ${sources.get(path)})` : existsSync(file) ? ` (in ${file})` : "");
    throw new ConfigError(`invalid configuration:\n  ${issues.map((i) => `${i.fields.map((f) => `${f}${from(f)}`).join(", ")}: ${i.message}`).join("\n  ")}`);
  }
  return parsed.data;
}

/**
 * Every derived timing of a validated configuration, computed once, with
 * their relations checked (see {@link timingIssues}). Throws
 * {@link ConfigError} naming the settings of each broken relation.
 */
export function compileConfig(config: Config): Timings {
  const timings = deriveTimings(config);
  const issues = timingIssues(timings);
  if (issues.length) throw new ConfigError(`invalid configuration:\n  ${issues.map((i) => `${i.fields.join(", ")}: ${i.message}`).join("\n  ")}`);
  return timings;
}

/** Merges `from` into `into`; a value set here no longer comes from the environment. */
function merge(into: Record<string, unknown>, from: Record<string, unknown>, at: string[], sources: Map<string, string>): void {
  for (const [k, v] of Object.entries(from)) {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      if (typeof into[k] !== "object" || into[k] === null) into[k] = {};
      merge(into[k] as Record<string, unknown>, v as Record<string, unknown>, [...at, k], sources);
    } else if (v !== undefined) {
      into[k] = v;
      sources.delete([...at, k].join("."));
    }
  }
}

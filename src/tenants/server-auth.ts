/**
 * The embedded server's authorization, kept equal to the tenant registry:
 * written before the server starts (from the engine's key and the tenants
 * last known), then rewritten and reloaded in place on every change.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../config/mod.ts";
import { authDir, CredentialsError, ensureEngineSeed, readCredential, type EmbeddedServer } from "../nats/mod.ts";
import { coalesced } from "../util/coalesce.ts";
import type { Logger } from "../util/log.ts";
import { renderAuthorization, type TenantKey } from "./authorization.ts";
import type { TenantRegistry } from "./registry.ts";

/** Keeps the server's authorization in step with the registry until stopped. */
export type AuthorizationSync = {
  /** Resolves when every change seen so far is applied (or has failed and been logged). */
  settled(): Promise<void>;
  /** Stops watching; waits for a reload in progress. */
  stop(): Promise<void>;
};

/** The authorization of an embedded server with `auth.mode: keys`. */
export type EmbeddedAuthorization = {
  /** The file the server config includes (`<dataDir>/auth/authorization.conf`). */
  file: string;
  /** The engine's public user key (its seed stays in `<dataDir>/auth/engine.nk`, or in `nats.credentials`). */
  enginePublicKey: string;
  /** Once the server runs and the buckets exist: applies the registry now and after every add or remove. */
  sync(registry: TenantRegistry, server: Pick<EmbeddedServer, "reload">): Promise<AuthorizationSync>;
};

function writeAtomic(file: string, text: string): void {
  // The server may read the file at any moment (a reload): it sees the old text or the new, never half.
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, file);
}

function readCache(file: string, log: Logger): TenantKey[] {
  if (!existsSync(file)) return [];
  try {
    const v = JSON.parse(readFileSync(file, "utf8")) as unknown;
    if (Array.isArray(v)) return v.filter((t): t is TenantKey => typeof t?.tenant === "string" && typeof t?.nkey === "string");
  } catch (err) {
    log.warn({ file, err: String(err) }, "cannot read the cached tenant keys; starting NATS with the engine's key only until the registry is read");
  }
  return [];
}

/** The engine's public key: of `nats.credentials` (an nkey seed file) when set, else of the seed generated under dataDir. */
function engineKey(config: Config, log: Logger): { publicKey: string } {
  const path = config.nats.credentials;
  if (path) {
    const c = readCredential(path);
    if (c.kind === "creds") {
      throw new CredentialsError(`${path} is a .creds file (operator/JWT mode), which the embedded server does not use: give an nkey seed file, or run your own server (NATS_URL)`);
    }
    return c;
  }
  const engine = ensureEngineSeed(config.dataDir);
  if (engine.created) log.info({ file: engine.file, nkey: engine.publicKey }, "generated the engine's NATS credential");
  return engine;
}

/**
 * Prepares the embedded server's authorization before it starts: the
 * engine's key (its seed generated once, unless `nats.credentials` names
 * one), and the authorization file from that key and the tenants cached at
 * the last sync (public keys only), so tenants can connect right after a
 * restart.
 */
export function prepareEmbeddedAuthorization(config: Config, log: Logger): EmbeddedAuthorization {
  const dataDir = config.dataDir;
  const engine = engineKey(config, log);
  const file = join(authDir(dataDir), "authorization.conf");
  const cacheFile = join(authDir(dataDir), "tenants.json");
  let cached = readCache(cacheFile, log);
  let applied: string;
  try {
    applied = renderAuthorization(engine.publicKey, cached);
  } catch (err) {
    log.warn({ file: cacheFile, err: String(err) }, "cached tenant keys are not valid; starting NATS with the engine's key only until the registry is read");
    cached = [];
    applied = renderAuthorization(engine.publicKey, cached);
  }
  writeAtomic(file, applied);

  const sync: EmbeddedAuthorization["sync"] = async (registry, server) => {
    const apply = async () => {
      const tenants = (await registry.list()).map((t) => ({ tenant: t.tenant, nkey: t.nkey }));
      const text = renderAuthorization(engine.publicKey, tenants);
      if (text === applied) return;
      writeAtomic(cacheFile, `${JSON.stringify(tenants, null, 2)}\n`);
      writeAtomic(file, text);
      await server.reload();
      applied = text;
      const before = new Set(cached.map((t) => `${t.tenant} ${t.nkey}`));
      const now = new Set(tenants.map((t) => `${t.tenant} ${t.nkey}`));
      const added = tenants.filter((t) => !before.has(`${t.tenant} ${t.nkey}`)).map((t) => t.tenant);
      const removed = cached.filter((t) => !now.has(`${t.tenant} ${t.nkey}`)).map((t) => t.tenant);
      cached = tenants;
      log.info({ tenants: tenants.length, added, removed }, "NATS authorization reloaded");
    };
    // Changes that arrive while an update waits are covered by it (it reads the whole registry): one update each.
    const update = coalesced(apply, (err) => log.error({ err: String(err) }, "NATS authorization update failed; the server keeps the previous one (retried at the next tenant change)"));
    const stopWatch = await registry.watch(update.trigger, (err) =>
      log.error({ err: String(err) }, "the tenant registry's watch failed; tenants added or removed from now on reach the server's authorization at the next start"),
    );
    update.trigger();
    await update.settled();
    return {
      settled: update.settled,
      async stop() {
        stopWatch();
        await update.settled();
      },
    };
  };
  return { file, enginePublicKey: engine.publicKey, sync };
}

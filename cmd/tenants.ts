/**
 * `achd tenants add|remove|list` — tenant credentials on NATS — and the
 * authorization block `achd nats-config` prints for an external server.
 */
import { existsSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { loadConfig, type Config } from "../src/config/mod.ts";
import { Buckets, configuredCredential, openBucket } from "../src/nats/mod.ts";
import { isUserPublicKey, renderAuthorization, tenantInboxPrefix, TenantRegistry, type TenantRecord } from "../src/tenants/mod.ts";

/** Connects a CLI command to the configured server with the engine's credential. */
export type CliConnect = (config: Config, name: string) => Promise<NatsConnection>;

/** A CLI command was used wrongly; the message says how to use it. */
export class UsageError extends Error {
  override name = "UsageError";
}

const USAGE = "usage: achd tenants add <tenant> [--out FILE] | achd tenants remove <tenant> | achd tenants list";

async function withRegistry<T>(connect: CliConnect, fn: (r: TenantRegistry, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const nc = await connect(config, "achd-tenants");
  try {
    return await fn(new TenantRegistry(await openBucket(new Kvm(nc), config, Buckets.Tenants)), config);
  } finally {
    await nc.close();
  }
}

/**
 * `achd tenants add <tenant> [--out FILE]`: registers the tenant and shows
 * its seed once — on stdout alone, or written to FILE (created with mode
 * 0600, never overwritten) with the path and public key printed instead.
 */
async function add(tenant: string, out: string | undefined, connect: CliConnect): Promise<number> {
  const file = out ? resolve(out) : undefined;
  if (file && existsSync(file)) throw new UsageError(`achd tenants add: ${file} exists; give a new file (a seed is never overwritten)`);
  if (file && !existsSync(dirname(file))) throw new UsageError(`achd tenants add: folder ${dirname(file)} does not exist`);
  return withRegistry(connect, async (registry) => {
    const issued = await registry.add(tenant);
    const hint = `producers connect with this seed and inbox prefix ${tenantInboxPrefix(tenant)} (nats CLI: --nkey FILE --inbox-prefix ${tenantInboxPrefix(tenant)})`;
    if (!file) {
      // stdout carries the seed alone, so `achd tenants add acme > acme.nk` works; the rest goes to stderr.
      console.error(`tenant ${tenant} registered, public key ${issued.nkey}\nits seed follows, shown this once — store it as a secret; ${hint}`);
      console.log(issued.seed);
      return 0;
    }
    try {
      writeFileSync(file, `${issued.seed}\n`, { mode: 0o600, flag: "wx" });
    } catch (err) {
      // A seed nobody holds is useless: take the registration back.
      await registry.remove(tenant).catch(() => undefined);
      throw new Error(`achd tenants add: cannot write ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); tenant ${tenant} was not registered`, { cause: err });
    }
    console.log(`tenant ${tenant} registered, public key ${issued.nkey}\nseed written to ${file} (mode 0600); ${hint}`);
    return 0;
  });
}

/** Runs `achd tenants <sub> …`; returns the exit code. */
export async function tenantsCmd(args: string[], connect: CliConnect): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { out: { type: "string" } } });
  const [tenant] = positionals;
  if (sub === "add" && tenant && positionals.length === 1) return add(tenant, values.out, connect);
  if (sub === "remove" && tenant && positionals.length === 1 && !values.out) {
    await withRegistry(connect, (r) => r.remove(tenant));
    console.log(`tenant ${tenant} removed: its credential stops working when the engine reloads the embedded server's authorization (an external server: apply achd nats-config again)`);
    return 0;
  }
  if (sub === "list" && positionals.length === 0 && !values.out) {
    const list: TenantRecord[] = await withRegistry(connect, (r) => r.list());
    for (const t of list) console.log(`${t.tenant.padEnd(24)}  ${t.nkey}  ${t.created_at}`);
    if (list.length === 0) console.error("no tenants registered (achd tenants add <tenant>)");
    return 0;
  }
  console.error(USAGE);
  return 2;
}

/**
 * The `authorization` block for an external server: the engine's user (from
 * `--engine-nkey`, else the configured credential's public key) and every
 * registered tenant the configured server holds. Prints it, or says on stderr
 * why it cannot; with `auth.mode: none` prints nothing.
 */
export async function printAuthorization(config: Config, engineNkey: string | undefined, connect: CliConnect): Promise<number> {
  if (config.auth.mode === "none") {
    console.error("# auth.mode is none: no authorization block (development only)");
    return 0;
  }
  let engine = engineNkey;
  if (engine === undefined) {
    try {
      const c = configuredCredential(config);
      if (c?.kind === "creds") {
        console.error("# the engine uses a .creds file (operator/JWT mode): the permissions belong in the user JWTs (nsc), not in an authorization block; see README");
        return 0;
      }
      engine = c?.publicKey;
    } catch (err) {
      console.error(`# ${(err as Error).message}`);
    }
  }
  if (!engine || !isUserPublicKey(engine)) {
    // The value is not echoed: it may be a seed given by mistake.
    console.error(`# authorization: ${engine ? "--engine-nkey is not a public user nkey; " : ""}give --engine-nkey <the engine's public user key (U…)> or set NATS_CREDS to the engine's seed file`);
    return engine ? 2 : 0;
  }
  let tenants: TenantRecord[] = [];
  try {
    const nc = await connect(config, "achd-nats-config");
    try {
      tenants = await new TenantRegistry(await new Kvm(nc).open(Buckets.Tenants)).list();
    } finally {
      await nc.close();
    }
  } catch (err) {
    console.error(`# tenants not read (${(err as Error).message}); the block lists the engine only — run this again after achd tenants add, and reload the server`);
  }
  console.log(renderAuthorization(engine, tenants));
  return 0;
}

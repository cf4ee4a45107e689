/** `achd tenants add|remove|list` — tenant credentials on NATS. */
import { existsSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Kvm } from "@nats-io/kv";
import { loadConfig, type Config } from "../src/config/mod.ts";
import { Buckets, openBucket } from "../src/nats/mod.ts";
import { tenantInboxPrefix, TenantRegistry, type TenantRecord } from "../src/tenants/mod.ts";
import { dispatchGroup, parseCommand, UsageError, type CliConnect, type ExitCode } from "./cli.ts";

const ADD_USAGE = `usage: achd tenants add <tenant> [--out FILE]
  register a tenant on NATS; print its nkey seed once (or write FILE, mode 0600, never overwritten)`;
const REMOVE_USAGE = `usage: achd tenants remove <tenant>
  remove a tenant: its NATS credential stops working`;
const LIST_USAGE = `usage: achd tenants list
  registered tenants and their public keys`;
const USAGE = `usage: achd tenants add <tenant> [--out FILE]
       achd tenants remove <tenant>
       achd tenants list`;

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
async function add(tenant: string, out: string | undefined, connect: CliConnect): Promise<ExitCode> {
  const file = out ? resolve(out) : undefined;
  if (file && existsSync(file)) throw new UsageError(`achd tenants add: ${file} exists; give a new file (a seed is never overwritten)`);
  if (file && !existsSync(dirname(file))) throw new UsageError(`achd tenants add: folder ${dirname(file)} does not exist`);
  return withRegistry<ExitCode>(connect, async (registry) => {
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
export function tenantsCmd(args: string[], connect: CliConnect): Promise<ExitCode> {
  return dispatchGroup("achd tenants", USAGE, args, {
    add: async (rest) => {
      const a = parseCommand({ name: "achd tenants add", usage: ADD_USAGE, options: { out: { type: "string" } }, positionals: { min: 1, max: 1 } }, rest);
      return a ? add(a.positionals[0]!, a.values.out, connect) : 0;
    },
    remove: async (rest) => {
      const a = parseCommand({ name: "achd tenants remove", usage: REMOVE_USAGE, options: {}, positionals: { min: 1, max: 1 } }, rest);
      if (!a) return 0;
      const tenant = a.positionals[0]!;
      await withRegistry(connect, (r) => r.remove(tenant));
      console.log(`tenant ${tenant} removed: its credential stops working when the engine reloads the embedded server's authorization (an external server: apply achd nats-config again)`);
      return 0;
    },
    list: async (rest) => {
      if (!parseCommand({ name: "achd tenants list", usage: LIST_USAGE, options: {} }, rest)) return 0;
      const list: TenantRecord[] = await withRegistry(connect, (r) => r.list());
      for (const t of list) console.log(`${t.tenant.padEnd(24)}  ${t.nkey}  ${t.created_at}`);
      if (list.length === 0) console.error("no tenants registered (achd tenants add <tenant>)");
      return 0;
    },
  });
}

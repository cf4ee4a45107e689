/**
 * `achd keys create|list|revoke` — HTTP API keys, straight in the key
 * bucket (with the engine's NATS credential), so an operator who lost the
 * admin key file can make another.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Kvm } from "@nats-io/kv";
import { ApiKeys, KeyRequestError, type KeyView } from "../src/auth/mod.ts";
import { loadConfig } from "../src/config/mod.ts";
import { Buckets, openBucket } from "../src/nats/mod.ts";
import { UsageError, type CliConnect } from "./tenants.ts";

const USAGE = `usage: achd keys create (--admin | --tenant T --scope S [--scope S…]) [--name N] [--out FILE]
       achd keys list [--tenant T]
       achd keys revoke <id>`;

async function withKeys<T>(connect: CliConnect, fn: (keys: ApiKeys) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const nc = await connect(config, "achd-keys");
  try {
    return await fn(new ApiKeys(await openBucket(new Kvm(nc), config, Buckets.Keys)));
  } finally {
    await nc.close();
  }
}

function line(k: KeyView): string {
  return `${k.id}  ${k.prefix.padEnd(20)}  ${(k.tenant ?? "(admin)").padEnd(16)}  ${k.scopes.join(",").padEnd(28)}  created ${k.created_at}  last used ${k.last_used_at ?? "never"}  ${k.name}`;
}

/** Runs `achd keys <sub> …`; returns the exit code. */
export async function keysCmd(args: string[], connect: CliConnect): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { admin: { type: "boolean" }, tenant: { type: "string" }, scope: { type: "string", multiple: true }, name: { type: "string" }, out: { type: "string" } },
  });
  if (sub === "create" && positionals.length === 0) {
    const spec = { tenant: values.admin ? null : (values.tenant ?? null), scopes: values.admin ? ["admin"] : (values.scope ?? []), ...(values.name ? { name: values.name } : {}) };
    if (values.admin && (values.tenant || values.scope)) throw new UsageError(`achd keys create: --admin takes no --tenant or --scope\n${USAGE}`);
    try {
      const { key, record } = await withKeys(connect, (k) => k.create(spec));
      if (values.out) {
        writeFileSync(values.out, `${key}\n`, { mode: 0o600, flag: "wx" });
        console.log(`key ${record.id} (${record.tenant ?? "admin"}: ${record.scopes.join(", ")}) written to ${values.out} (mode 0600)`);
      } else {
        // stdout carries the key alone (achd keys create … > file); the rest goes to stderr.
        console.error(`key ${record.id} (${record.tenant ?? "admin"}: ${record.scopes.join(", ")}); shown this once, store it as a secret:`);
        console.log(key);
      }
      return 0;
    } catch (err) {
      if (err instanceof KeyRequestError) throw new UsageError(`achd keys create: ${err.message}\n${USAGE}`);
      throw err;
    }
  }
  if (sub === "list" && positionals.length === 0) {
    const list = await withKeys(connect, (k) => k.list(values.tenant));
    for (const k of list) console.log(line(k));
    if (list.length === 0) console.error("no keys");
    return 0;
  }
  if (sub === "revoke" && positionals.length === 1) {
    const id = positionals[0]!;
    if (!(await withKeys(connect, (k) => k.revoke(id)))) {
      console.error(`achd keys revoke: no key ${id}`);
      return 1;
    }
    console.log(`key ${id} revoked (every API process refuses it within a second)`);
    return 0;
  }
  throw new UsageError(USAGE);
}

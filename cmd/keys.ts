/**
 * `achd keys create|list|revoke` — HTTP API keys, straight in the key
 * bucket (with the engine's NATS credential), so an operator who lost the
 * admin key file can make another.
 */
import { writeFileSync } from "node:fs";
import { Kvm } from "@nats-io/kv";
import { ApiKeys, KeyRequestError, TENANT_SCOPES, type KeyView } from "../src/auth/mod.ts";
import { loadConfig } from "../src/config/mod.ts";
import { Buckets, openBucket } from "../src/nats/mod.ts";
import { dispatchGroup, parseCommand, UsageError, type CliConnect, type ExitCode } from "./cli.ts";

const CREATE_USAGE = `usage: achd keys create (--admin | --scope metrics | --tenant T --scope S [--scope S…]) [--name N] [--out FILE]
  make an HTTP API key (shown once); tenant scopes: ${TENANT_SCOPES.join(", ")};
  metrics (alone, no tenant): reads /metrics only, for Prometheus
  --admin       a key for every tenant and the admin routes
  --tenant T    the tenant the key is for
  --scope S     a scope of that key (repeat for more)
  --name N      a name shown by achd keys list
  --out FILE    write the key to FILE (mode 0600, never overwritten) instead of stdout`;
const LIST_USAGE = `usage: achd keys list [--tenant T]
  keys by id and prefix, scopes, creation and last use (never a key)`;
const REVOKE_USAGE = `usage: achd keys revoke <id>
  revoke a key in every API process within a second`;
const USAGE = `usage: achd keys create (--admin | --scope metrics | --tenant T --scope S [--scope S…]) [--name N] [--out FILE]
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

async function create(args: string[], connect: CliConnect): Promise<ExitCode> {
  const a = parseCommand(
    {
      name: "achd keys create",
      usage: CREATE_USAGE,
      options: { admin: { type: "boolean" }, tenant: { type: "string" }, scope: { type: "string", multiple: true }, name: { type: "string" }, out: { type: "string" } },
    },
    args,
  );
  if (!a) return 0;
  const { values } = a;
  const spec = { tenant: values.admin ? null : (values.tenant ?? null), scopes: values.admin ? ["admin"] : (values.scope ?? []), ...(values.name ? { name: values.name } : {}) };
  if (values.admin && (values.tenant || values.scope)) throw new UsageError(`achd keys create: --admin takes no --tenant or --scope\n${CREATE_USAGE}`);
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
    if (err instanceof KeyRequestError) throw new UsageError(`achd keys create: ${err.message}\n${CREATE_USAGE}`);
    throw err;
  }
}

/** Runs `achd keys <sub> …`; returns the exit code. */
export function keysCmd(args: string[], connect: CliConnect): Promise<ExitCode> {
  return dispatchGroup("achd keys", USAGE, args, {
    create: (rest) => create(rest, connect),
    list: async (rest) => {
      const a = parseCommand({ name: "achd keys list", usage: LIST_USAGE, options: { tenant: { type: "string" } } }, rest);
      if (!a) return 0;
      const list = await withKeys(connect, (k) => k.list(a.values.tenant));
      for (const k of list) console.log(line(k));
      if (list.length === 0) console.error("no keys");
      return 0;
    },
    revoke: async (rest) => {
      const a = parseCommand({ name: "achd keys revoke", usage: REVOKE_USAGE, options: {}, positionals: { min: 1, max: 1 } }, rest);
      if (!a) return 0;
      const id = a.positionals[0]!;
      if (!(await withKeys(connect, (k) => k.revoke(id)))) {
        console.error(`achd keys revoke: no key ${id}`);
        return 1;
      }
      console.log(`key ${id} revoked (every API process refuses it within a second)`);
      return 0;
    },
  });
}

/**
 * `achd nats-config [--partitions N] [--engine-nkey PUB]` — the config an
 * external nats-server needs: the partition mapping (for a 2.9 server) and
 * the authorization block (the engine's user and every registered tenant).
 */
import { Kvm } from "@nats-io/kv";
import { loadConfig, type Config } from "../src/config/mod.ts";
import { partitionMappingBlock } from "../src/events/mod.ts";
import { Buckets, configuredCredential } from "../src/nats/mod.ts";
import { isUserPublicKey, renderAuthorization, TenantRegistry, type TenantRecord } from "../src/tenants/mod.ts";
import { cliConnect, parseCommand, type CliConnect, type ExitCode } from "./cli.ts";

const USAGE = `usage: achd nats-config [--partitions N] [--engine-nkey PUB]
  print the mapping a nats-server 2.9 config needs and the authorization
  block (engine user, registered tenants) for an external server
  --partitions N     partition count, 1 … 1024 (default: the configured one)
  --engine-nkey PUB  the engine's public user nkey (U…) (default: from NATS_CREDS)`;

/** Runs `achd nats-config …`; returns the exit code. */
export async function natsConfigCmd(args: string[]): Promise<ExitCode> {
  const a = parseCommand(
    { name: "achd nats-config", usage: USAGE, options: { partitions: { type: "integer", min: 1, max: 1024 }, "engine-nkey": { type: "string" } } },
    args,
  );
  if (!a) return 0;
  const config = loadConfig();
  console.log(partitionMappingBlock(a.values.partitions ?? config.partitions));
  return printAuthorization(config, a.values["engine-nkey"], cliConnect);
}

/**
 * The `authorization` block for an external server: the engine's user (from
 * `--engine-nkey`, else the configured credential's public key) and every
 * registered tenant the configured server holds. Prints it, or says on stderr
 * why it cannot; with `auth.mode: none` prints nothing.
 */
async function printAuthorization(config: Config, engineNkey: string | undefined, connect: CliConnect): Promise<ExitCode> {
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

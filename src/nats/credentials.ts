/**
 * The engine's own NATS credential: an nkey seed file or a `.creds` file
 * (operator/JWT mode) named by `nats.credentials`, or, with the embedded
 * server, a seed the engine generates once under `<dataDir>/auth/`.
 * Seeds are read into memory and handed to nats.js; they are never logged
 * and never appear in an error message.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createUser, fromSeed } from "@nats-io/nkeys";
import { credsAuthenticator, nkeyAuthenticator, type Authenticator } from "@nats-io/transport-node";
import type { Config } from "../config/mod.ts";

/** A credential file cannot be used; the message names the file and what to do (never its contents). */
export class CredentialsError extends Error {
  override name = "CredentialsError";
}

/** A credential read from a file: its kind, the user's public key, and the authenticator for nats.js. */
export type Credential = { kind: "nkey" | "creds"; publicKey: string; authenticator: Authenticator };

/** The connect options that authenticate a connection (empty: connect without credentials). */
export type NatsAuthOptions = { authenticator?: Authenticator };

const JWT_BEGIN = "-----BEGIN NATS USER JWT-----";
const USER_SEED = /\bSU[A-Z2-7]{56}\b/;

/** `<dataDir>/auth`: the engine's seed and the embedded server's authorization (mode 0700). */
export function authDir(dataDir: string): string {
  return join(dataDir, "auth");
}

/** `<dataDir>/auth/engine.nk`: the seed the engine generates for the embedded server. */
export function engineSeedFile(dataDir: string): string {
  return join(authDir(dataDir), "engine.nk");
}

/**
 * Reads a credential file and tells which kind it is: a `.creds` file (a user
 * JWT and its seed, for operator/JWT deployments) or an nkey seed file (one
 * line `SU…`, as `nk -gen user` or `achd tenants add --out` writes it).
 */
export function readCredential(path: string): Credential {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CredentialsError(`cannot read the NATS credential ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"} (check nats.credentials / NATS_CREDS)`, { cause: err });
  }
  if (text.includes(JWT_BEGIN)) {
    const bytes = new TextEncoder().encode(text);
    const jwt = /-----BEGIN NATS USER JWT-----\s*([A-Za-z0-9_.=-]+)/.exec(text)?.[1];
    const sub = jwt ? jwtSubject(jwt) : undefined;
    if (!sub || !USER_SEED.test(text)) throw new CredentialsError(`${path} looks like a .creds file but has no valid user JWT and seed (regenerate it with nsc)`);
    return { kind: "creds", publicKey: sub, authenticator: credsAuthenticator(bytes) };
  }
  const seed = USER_SEED.exec(text)?.[0];
  if (!seed) throw new CredentialsError(`${path} holds neither an nkey user seed (a line starting with SU) nor a .creds file`);
  const bytes = new TextEncoder().encode(seed);
  let publicKey: string;
  try {
    // A copy: clear() zeroes the array the key pair was made from.
    const kp = fromSeed(bytes.slice());
    publicKey = kp.getPublicKey();
    kp.clear();
  } catch (err) {
    throw new CredentialsError(`${path} holds a damaged nkey seed (checksum or length is wrong)`, { cause: err });
  }
  return { kind: "nkey", publicKey, authenticator: nkeyAuthenticator(bytes) };
}

function jwtSubject(jwt: string): string | undefined {
  try {
    const claims = JSON.parse(Buffer.from(jwt.split(".")[1] ?? "", "base64url").toString("utf8")) as { sub?: unknown };
    return typeof claims.sub === "string" ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Creates the engine's seed for the embedded server on first use (folder
 * 0700, file 0600, created exclusively) and reuses it afterwards. Returns the
 * public key, which is all the server's configuration holds.
 */
export function ensureEngineSeed(dataDir: string): { file: string; publicKey: string; created: boolean } {
  const dir = authDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = engineSeedFile(dataDir);
  let created = false;
  if (!existsSync(file)) {
    const kp = createUser();
    try {
      writeFileSync(file, `${new TextDecoder().decode(kp.getSeed())}\n`, { mode: 0o600, flag: "wx" });
      created = true;
    } catch (err) {
      // Another process created it first: use theirs.
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    } finally {
      kp.clear();
    }
  }
  chmodSync(file, 0o600);
  const c = readCredential(file);
  if (c.kind !== "nkey") throw new CredentialsError(`${file} must hold an nkey seed; delete it and start again to generate one`);
  return { file, publicKey: c.publicKey, created };
}

/** The credential the configuration names: `nats.credentials`, else the embedded server's generated seed, else none. */
export function configuredCredential(config: Config): Credential | undefined {
  if (config.nats.credentials) return readCredential(config.nats.credentials);
  if (config.nats.url || config.auth.mode === "none") return undefined;
  const file = engineSeedFile(config.dataDir);
  if (!existsSync(file)) {
    throw new CredentialsError(
      `no engine credential at ${file}: the embedded nats-server requires one; start the engine once (achd start) to create it, ` +
        `set ACH_DATA_DIR to the engine's data folder, or set NATS_CREDS`,
    );
  }
  return readCredential(file);
}

/**
 * nats.js connect options for the engine's processes and CLI commands:
 * an authenticator for `nats.credentials` (seed or `.creds` file), for the
 * embedded server's generated seed (`auth.mode: keys`), or nothing (an
 * external server without `nats.credentials`, or `auth.mode: none`).
 */
export function natsAuthOptions(config: Config): NatsAuthOptions {
  const c = configuredCredential(config);
  return c ? { authenticator: c.authenticator } : {};
}

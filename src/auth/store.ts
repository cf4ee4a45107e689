import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { KV } from "@nats-io/kv";
import { ID_TOKEN } from "../events/mod.ts";
import { currentEntries, isCasFailure, watchChanges } from "../nats/mod.ts";
import { ALL_SCOPES, generateKey, KEY_ID, keyPrefix, parseKey, secretMatches, Scopes, TENANT_SCOPES, type KeyRecord, type Scope } from "./keys.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A key request that cannot be honoured; the message says which field and why. */
export class KeyRequestError extends Error {
  override name = "KeyRequestError";
}

/** What a caller asks for when creating a key. */
export type KeySpec = { tenant: string | null; scopes: readonly string[]; name?: string };

/** A key as listings show it: the record without its hash, with its visible prefix. */
export type KeyView = Omit<KeyRecord, "hash"> & { prefix: string };

/** A listing view of a record. */
export function keyView(r: KeyRecord): KeyView {
  const { hash: _hash, ...rest } = r;
  return { ...rest, prefix: keyPrefix(r.id) };
}

function checkedName(name = ""): string {
  if (name.length > 128 || /[\u0000-\u001f]/.test(name)) throw new KeyRequestError("name: at most 128 printable characters");
  return name;
}

/**
 * Checks a key request: admin keys have no tenant and only `admin`, metrics keys no tenant and only `metrics`;
 * tenant keys have a valid tenant and tenant scopes.
 */
export function checkKeySpec(spec: KeySpec): { tenant: string | null; scopes: Scope[]; name: string } {
  const scopes = [...new Set(spec.scopes)];
  if (scopes.length === 0) throw new KeyRequestError(`scopes: give at least one of ${ALL_SCOPES.join(", ")}`);
  const unknown = scopes.filter((s) => !(ALL_SCOPES as readonly string[]).includes(s));
  if (unknown.length) throw new KeyRequestError(`scopes: unknown ${unknown.map((s) => JSON.stringify(s)).join(", ")}; use ${ALL_SCOPES.join(", ")}`);
  // Admin and metrics keys belong to no tenant and hold their one scope alone.
  for (const [scope, noTenant, alone] of [
    [Scopes.Admin, "an admin key belongs to no tenant (it may act for all)", "admin already grants every scope; give it alone"],
    [Scopes.Metrics, "a metrics key belongs to no tenant (it reads the whole process's metrics)", "give metrics alone (a key for Prometheus should read metrics and nothing else)"],
  ] as const) {
    if (!scopes.includes(scope)) continue;
    if (spec.tenant !== null) throw new KeyRequestError(`tenant: ${noTenant}; leave tenant out`);
    if (scopes.length > 1) throw new KeyRequestError(`scopes: ${alone}`);
  }
  const admin = scopes.includes(Scopes.Admin);
  if (scopes.includes(Scopes.Metrics)) return { tenant: null, scopes: [Scopes.Metrics], name: checkedName(spec.name) };
  if (!admin && spec.tenant === null) throw new KeyRequestError(`tenant: a key with ${scopes.join(", ")} belongs to one tenant; name it`);
  if (spec.tenant !== null && !ID_TOKEN.test(spec.tenant)) throw new KeyRequestError(`tenant: ${JSON.stringify(spec.tenant)} is not a valid tenant id (A-Z a-z 0-9 _ -)`);
  const name = checkedName(spec.name);
  if (!admin && scopes.some((s) => !(TENANT_SCOPES as readonly string[]).includes(s))) throw new KeyRequestError(`scopes: a tenant key may hold ${TENANT_SCOPES.join(", ")}`);
  return { tenant: spec.tenant, scopes: scopes as Scope[], name };
}

/** Where the first admin key is written: `<dataDir>/auth/admin.key`. */
export function adminKeyFile(dataDir: string): string {
  return join(dataDir, "auth", "admin.key");
}

/** Bucket key of the bootstrap marker: whoever creates it made the first admin key. */
const BOOTSTRAP = "bootstrap";
/** How often a key's last-use time is written at most (a write per request would cost more than the request). */
const TOUCH_EVERY_MS = 60_000;
/** How long an unknown key id is remembered as unknown before the bucket is asked again. */
const NEGATIVE_MS = 1_000;

/**
 * API keys in a KV bucket (`ach_keys`, one entry per key id), mirrored in
 * memory through a watch: authentication reads memory only, and a
 * revocation reaches every process holding a mirror within the watch's
 * latency (milliseconds). A key id not yet in the mirror (created a moment
 * ago elsewhere) is looked up in the bucket once.
 */
export class ApiKeys {
  readonly #kv: KV;
  readonly #byId = new Map<string, { record: KeyRecord; revision: number }>();
  readonly #unknownUntil = new Map<string, number>();
  readonly #touchedAt = new Map<string, number>();
  #stopWatch: (() => void) | undefined;
  /** Set when the watch failed: the mirror may miss a revocation, so every key is read from the bucket instead. */
  #watchFailed: unknown;

  constructor(kv: KV) {
    this.#kv = kv;
  }

  /**
   * Starts the mirror: the watch first (so nothing between the two is
   * missed), then the stored keys. `onError` hears of a watch that fails;
   * from then on every key is checked against the bucket itself, so a
   * revocation is never missed.
   */
  async start(onError: (err: unknown) => void = () => undefined): Promise<void> {
    const updates: { key: string; op: string; value: Uint8Array; revision: number }[] = [];
    let loaded = false;
    this.#stopWatch = await watchChanges(
      this.#kv,
      (e) => {
        const u = { key: e.key, op: e.operation, value: e.value, revision: e.revision };
        if (loaded) this.#apply(u);
        else updates.push(u);
      },
      (err) => {
        this.#watchFailed = err;
        onError(err);
      },
    );
    for (const e of await currentEntries(this.#kv, ">")) this.#apply({ key: e.key, op: e.operation, value: e.value, revision: e.revision });
    loaded = true;
    for (const u of updates) this.#apply(u);
  }

  stop(): void {
    this.#stopWatch?.();
  }

  #apply(u: { key: string; op: string; value: Uint8Array; revision: number }): void {
    if (!KEY_ID.test(u.key)) return;
    if (u.op !== "PUT") {
      this.#byId.delete(u.key);
      return;
    }
    const had = this.#byId.get(u.key);
    if (had && had.revision > u.revision) return;
    this.#byId.set(u.key, { record: JSON.parse(dec.decode(u.value)) as KeyRecord, revision: u.revision });
    this.#unknownUntil.delete(u.key);
  }

  /** Creates a key; the returned `key` string is the only copy there will ever be. */
  async create(spec: KeySpec, now = new Date()): Promise<{ key: string; record: KeyRecord }> {
    const ok = checkKeySpec(spec);
    const k = generateKey();
    const record: KeyRecord = { id: k.id, tenant: ok.tenant, scopes: ok.scopes, name: ok.name, hash: k.hash, created_at: now.toISOString() };
    const revision = await this.#kv.create(k.id, enc.encode(JSON.stringify(record)));
    this.#apply({ key: k.id, op: "PUT", value: enc.encode(JSON.stringify(record)), revision });
    return { key: k.key, record };
  }

  /** Every key (without hashes), oldest first; only `tenant`'s when given. */
  async list(tenant?: string): Promise<KeyView[]> {
    const out = (await currentEntries(this.#kv, ">")).filter((e) => KEY_ID.test(e.key)).map((e) => JSON.parse(dec.decode(e.value)) as KeyRecord);
    return out
      .filter((r) => tenant === undefined || r.tenant === tenant)
      .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id))
      .map(keyView);
  }

  /** The record of key `id` (without its hash), or undefined. */
  async get(id: string): Promise<KeyView | undefined> {
    if (!KEY_ID.test(id)) return undefined;
    const e = await this.#kv.get(id);
    return e?.operation === "PUT" ? keyView(JSON.parse(dec.decode(e.value)) as KeyRecord) : undefined;
  }

  /** Revokes key `id`; false when there was no such key. */
  async revoke(id: string): Promise<boolean> {
    if (!KEY_ID.test(id)) return false;
    const e = await this.#kv.get(id);
    if (!e || e.operation !== "PUT") return false;
    await this.#kv.delete(id);
    this.#byId.delete(id);
    return true;
  }

  /**
   * The record a presented key string belongs to, or undefined when it is
   * malformed, unknown, revoked or its secret does not match.
   */
  async verify(key: string, now = Date.now()): Promise<KeyRecord | undefined> {
    const p = parseKey(key);
    if (!p) return undefined;
    let hit = this.#watchFailed === undefined ? this.#byId.get(p.id) : undefined;
    if (!hit && (this.#watchFailed !== undefined || (this.#unknownUntil.get(p.id) ?? 0) < now)) {
      // Maybe created elsewhere a moment ago and not mirrored yet; ask once, then remember a miss briefly.
      const e = await this.#kv.get(p.id);
      if (e?.operation === "PUT") this.#apply({ key: p.id, op: "PUT", value: e.value, revision: e.revision });
      else {
        this.#byId.delete(p.id);
        if (this.#unknownUntil.size > 10_000) this.#unknownUntil.clear();
        this.#unknownUntil.set(p.id, now + NEGATIVE_MS);
      }
      hit = this.#byId.get(p.id);
    }
    if (!hit || !secretMatches(p.secret, hit.record.hash)) return undefined;
    this.#touch(hit.record, hit.revision, now);
    return hit.record;
  }

  /** Records the last use, at most once a minute per key, never resurrecting a revoked key (compare-and-set). */
  #touch(record: KeyRecord, revision: number, now: number): void {
    if (now - (this.#touchedAt.get(record.id) ?? 0) < TOUCH_EVERY_MS) return;
    this.#touchedAt.set(record.id, now);
    const next = { ...record, last_used_at: new Date(now).toISOString() };
    // Best effort: a revoked key fails the compare-and-set (as it should), and a missed last-use time costs nothing.
    this.#kv.update(record.id, enc.encode(JSON.stringify(next)), revision).catch(() => undefined);
  }

  /**
   * On a fresh deployment, creates the first admin key and writes it to
   * `file` (mode 0600, folder 0700). Only one process of a deployment wins
   * (create-only marker); returns whether this one did.
   */
  async bootstrap(file: string, now = new Date()): Promise<boolean> {
    if (existsSync(file)) return false;
    try {
      await this.#kv.create(BOOTSTRAP, enc.encode(now.toISOString()));
    } catch (err) {
      // Another process of the deployment made the first admin key; anything else is a real failure.
      if (isCasFailure(err)) return false;
      throw err;
    }
    const { key } = await this.create({ tenant: null, scopes: [Scopes.Admin], name: "bootstrap admin" }, now);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, `${key}\n`, { mode: 0o600 });
    return true;
  }
}

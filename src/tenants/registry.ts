import { createUser } from "@nats-io/nkeys";
import { currentEntries, isCasFailure, watchChanges } from "../nats/mod.ts";
import type { KV } from "@nats-io/kv";
import { ID_TOKEN } from "../events/mod.ts";
import { isUserPublicKey } from "./authorization.ts";

/** A registered tenant as the `ach_tenants` bucket stores it: public key only. */
export type TenantRecord = { tenant: string; nkey: string; created_at: string };

/** A tenant just added: its record and its seed, which exists nowhere else — show it once or write it to a file. */
export type IssuedTenant = TenantRecord & { seed: string };

/** The tenant id is not a valid id token. */
export class InvalidTenantError extends Error {
  override name = "InvalidTenantError";
  constructor(readonly tenant: string) {
    super(`tenant id ${JSON.stringify(tenant.slice(0, 200))} is not valid: 1-128 characters of A-Z a-z 0-9 _ -, starting with a letter or digit`);
  }
}

/** `add` of a tenant that is already registered. */
export class TenantExistsError extends Error {
  override name = "TenantExistsError";
  constructor(readonly tenant: string, opts?: ErrorOptions) {
    super(`tenant ${tenant} is already registered; to issue a new credential, remove it first (achd tenants remove ${tenant}), which cuts off the old one`, opts);
  }
}

/** `remove` of a tenant that is not registered. */
export class TenantNotFoundError extends Error {
  override name = "TenantNotFoundError";
  constructor(readonly tenant: string) {
    super(`tenant ${tenant} is not registered (see achd tenants list)`);
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A stored value as a record, or undefined when it is not a valid one for `key` (such an entry grants nothing). */
function parseRecord(key: string, value: Uint8Array): TenantRecord | undefined {
  try {
    const r = JSON.parse(dec.decode(value)) as Partial<TenantRecord>;
    if (r.tenant !== key || typeof r.nkey !== "string" || !isUserPublicKey(r.nkey)) return undefined;
    return { tenant: r.tenant, nkey: r.nkey, created_at: typeof r.created_at === "string" ? r.created_at : "" };
  } catch {
    return undefined;
  }
}

/**
 * The tenants allowed on NATS, in the `ach_tenants` bucket: one key per
 * tenant id, value `{tenant, nkey, created_at}`. Adding a tenant generates a
 * user nkey pair and stores only its public key; the seed goes back to the
 * caller once and is never stored by the engine.
 */
export class TenantRegistry {
  constructor(private readonly kv: KV) {}

  /** Registers `tenant` (create-only: refuses one that exists) and returns its seed, once. */
  async add(tenant: string, now: Date = new Date()): Promise<IssuedTenant> {
    if (!ID_TOKEN.test(tenant)) throw new InvalidTenantError(tenant);
    const kp = createUser();
    try {
      const record: TenantRecord = { tenant, nkey: kp.getPublicKey(), created_at: now.toISOString() };
      try {
        await this.kv.create(tenant, enc.encode(JSON.stringify(record)));
      } catch (err) {
        if (isCasFailure(err)) throw new TenantExistsError(tenant, { cause: err });
        throw err;
      }
      return { ...record, seed: dec.decode(kp.getSeed()) };
    } finally {
      kp.clear();
    }
  }

  /** Removes `tenant`: its credential stops working at the next authorization reload. */
  async remove(tenant: string): Promise<void> {
    if (!ID_TOKEN.test(tenant)) throw new InvalidTenantError(tenant);
    const e = await this.kv.get(tenant);
    if (!e || e.operation !== "PUT") throw new TenantNotFoundError(tenant);
    await this.kv.purge(tenant);
  }

  /** The record of `tenant`, or undefined. */
  async get(tenant: string): Promise<TenantRecord | undefined> {
    if (!ID_TOKEN.test(tenant)) return undefined;
    const e = await this.kv.get(tenant);
    return e && e.operation === "PUT" ? parseRecord(e.key, e.value) : undefined;
  }

  /** Every registered tenant, sorted by id. Entries that are not a valid record are left out. */
  async list(): Promise<TenantRecord[]> {
    return (await currentEntries(this.kv, ">")).flatMap((e) => parseRecord(e.key, e.value) ?? []);
  }

  /**
   * Calls `onChange` after every add or remove (by any process) from now on;
   * read the registry again there; a failed watch goes to `onError`.
   * Returns a function that stops watching.
   */
  async watch(onChange: () => void, onError: (err: unknown) => void): Promise<() => void> {
    return watchChanges(this.kv, onChange, onError);
  }
}

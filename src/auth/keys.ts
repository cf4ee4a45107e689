import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * What an API key may do. A tenant key holds some of the first four for
 * its one tenant; an admin key (no tenant) may do everything, for every
 * tenant.
 */
export const Scopes = {
  /** Publish events of the key's tenant (`POST /v1/events`). */
  EventsWrite: "events:write",
  /** Read the tenant's achievements, progress and rules. */
  Read: "read",
  /** Add and retire the tenant's rule versions. */
  RulesWrite: "rules:write",
  /** Manage the tenant's webhooks: register, change, remove, read their delivery log and dead letters, redeliver. */
  Webhooks: "webhooks",
  /** Read `/metrics` (what Prometheus scrapes with): an operator key of no tenant, holding nothing else. */
  Metrics: "metrics",
  /** Everything: shared rules, dead letters of every tenant, redrive, status, tenants and keys. */
  Admin: "admin",
} as const;
export type Scope = (typeof Scopes)[keyof typeof Scopes];

/** The scopes a tenant key may hold. */
export const TENANT_SCOPES: readonly Scope[] = [Scopes.EventsWrite, Scopes.Read, Scopes.RulesWrite, Scopes.Webhooks];
/** Every scope name, for validation. */
export const ALL_SCOPES: readonly Scope[] = [...TENANT_SCOPES, Scopes.Metrics, Scopes.Admin];

/**
 * A stored key: never the key itself, only the SHA-256 of its secret part
 * (the secret is 256 random bits, so a fast hash is as strong as a slow
 * one here) and what it may do.
 */
export type KeyRecord = {
  /** Public identifier, also the bucket key and the key's visible prefix. */
  id: string;
  /** The tenant the key belongs to; null for an admin key. */
  tenant: string | null;
  scopes: Scope[];
  /** A label for people ("checkout service"). */
  name: string;
  /** Hex SHA-256 of the secret part. */
  hash: string;
  created_at: string;
  last_used_at?: string;
};

/** Key ids: 12 lower-case hex characters (48 random bits — an index, not a secret). */
export const KEY_ID = /^[0-9a-f]{12}$/;
const KEY_RE = /^achd_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** A new key: the string to hand out once, and its parts. */
export type NewKey = { key: string; id: string; hash: string };

/** Makes a key `achd_<id>_<secret>`: a 48-bit id and a 256-bit secret, from the system's CSPRNG. */
export function generateKey(): NewKey {
  const id = randomBytes(6).toString("hex");
  const secret = randomBytes(32).toString("base64url");
  return { key: `achd_${id}_${secret}`, id, hash: hashSecret(secret) };
}

/** Hex SHA-256 of a key's secret part. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

/** The id and secret of a key string, or undefined when it has not the shape of a key. */
export function parseKey(key: string): { id: string; secret: string } | undefined {
  const m = KEY_RE.exec(key);
  return m ? { id: m[1]!, secret: m[2]! } : undefined;
}

/** Whether `secret` hashes to `hash`, compared in constant time. */
export function secretMatches(secret: string, hash: string): boolean {
  const a = Buffer.from(hashSecret(secret), "hex");
  const b = Buffer.from(hash, "hex");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The visible part of a key, for listings: `achd_<id>_…`. */
export function keyPrefix(id: string): string {
  return `achd_${id}_…`;
}

/** Whether a record grants `scope` (admin grants every scope). */
export function grants(record: { scopes: readonly Scope[] }, scope: Scope): boolean {
  return record.scopes.includes(Scopes.Admin) || record.scopes.includes(scope);
}

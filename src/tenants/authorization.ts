/**
 * Who may use which subject on NATS (design.md §4 "Trust model"), as the
 * nats-server `authorization { users: [...] }` block: pure text from public
 * keys, the same for the embedded server and for an external one.
 */
import { fromPublic } from "@nats-io/nkeys";
import { EVENTS_PREFIX, ID_TOKEN, PARTITIONED_PREFIX, UNLOCKED_PREFIX } from "../events/mod.ts";

/** An entry cannot go into the server's authorization; the message names it. */
export class AuthorizationConfigError extends Error {
  override name = "AuthorizationConfigError";
}

/** A tenant's public user nkey, as the authorization needs it. */
export type TenantKey = { tenant: string; nkey: string };

/** Publish and subscribe allow-lists of one NATS user; everything not listed is denied. */
export type SubjectPermissions = { publish: { allow: string[] }; subscribe: { allow: string[] } };

/**
 * The inbox prefix a tenant's clients connect with (`inboxPrefix` in nats.js,
 * `--inbox-prefix` in the nats CLI): `_INBOX_<tenant>`. Replies to the
 * tenant's requests — JetStream PubAcks among them — arrive under it, and only
 * that tenant may subscribe there.
 */
export function tenantInboxPrefix(tenant: string): string {
  return `_INBOX_${tenant}`;
}

/**
 * A tenant's permissions: publish its own events (`ach.events.<tenant>.>`),
 * subscribe its own unlocks (`ach.unlocked.<tenant>.>`) and its own inbox.
 * Everything else is denied: other tenants' partition subjects, publishing
 * unlocks, dead letters, KV (`$KV.>`), the JetStream API (`$JS.API.>`), other
 * tenants.
 *
 * The publish list also holds `ach.p.*.<tenant>.>`: nats-server 2.9 applies
 * the server's subject mapping *before* it checks publish permissions, so an
 * event on `ach.events.<tenant>.<user>.…` is checked as
 * `ach.p.<k>.<tenant>.<user>.…` (verified on 2.9.10). A tenant can therefore
 * publish straight to a partition subject of its own tenant; the engine
 * dead-letters such a message when k is not its user's partition
 * (`wrong_partition`). On 2.10+ (the stream's own subject transform) the
 * entry matches no stream and grants nothing.
 */
export function tenantPermissions(tenant: string): SubjectPermissions {
  checkTenant(tenant);
  return {
    publish: { allow: [`${EVENTS_PREFIX}.${tenant}.>`, `${PARTITIONED_PREFIX}.*.${tenant}.>`] },
    subscribe: { allow: [`${UNLOCKED_PREFIX}.${tenant}.>`, `${tenantInboxPrefix(tenant)}.>`] },
  };
}

/** True for a valid public user nkey (`U…`, checksum included). */
export function isUserPublicKey(key: string): boolean {
  if (!/^U[A-Z2-7]{55}$/.test(key)) return false;
  try {
    fromPublic(key);
    return true;
  } catch {
    return false;
  }
}

function checkTenant(tenant: string): void {
  if (!ID_TOKEN.test(tenant)) throw new AuthorizationConfigError(`tenant id ${JSON.stringify(tenant)} is not valid (1-128 characters of A-Z a-z 0-9 _ -, starting with a letter or digit)`);
}

function checkKey(key: string, whose: string): void {
  if (isUserPublicKey(key)) return;
  // Never quote the value: it may be a seed given by mistake.
  const seed = key.startsWith("S") ? " (it looks like a seed: give the public key, and keep the seed secret)" : "";
  throw new AuthorizationConfigError(`${whose} is not a public user nkey (U…, 56 characters)${seed}`);
}

const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(", ")}]`;

/**
 * Renders the `authorization` block: the engine's nkey with full rights,
 * then each tenant's nkey with {@link tenantPermissions}, sorted by tenant.
 * Only public keys go in; a bad tenant id or key is refused (the text is
 * server config, so nothing unchecked may reach it).
 */
export function renderAuthorization(engineKey: string, tenants: readonly TenantKey[]): string {
  checkKey(engineKey, "engine key");
  const seen = new Set<string>();
  const lines = ["authorization {", "  users: [", "    # the engine: full rights", `    { nkey: ${JSON.stringify(engineKey)} }`];
  for (const t of [...tenants].sort((a, b) => (a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 : 0))) {
    checkTenant(t.tenant);
    checkKey(t.nkey, `tenant ${t.tenant}`);
    if (t.nkey === engineKey || seen.has(t.nkey)) throw new AuthorizationConfigError(`tenant ${t.tenant}: nkey ${t.nkey} is already used by another user`);
    seen.add(t.nkey);
    const p = tenantPermissions(t.tenant);
    lines.push(
      `    # tenant ${t.tenant}`,
      `    { nkey: ${JSON.stringify(t.nkey)}, permissions: {`,
      `        publish: { allow: ${list(p.publish.allow)} },`,
      `        subscribe: { allow: ${list(p.subscribe.allow)} } } }`,
    );
  }
  lines.push("  ]", "}", "");
  return lines.join("\n");
}

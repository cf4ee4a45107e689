import rateLimitPlugin from "@fastify/rate-limit";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { grants, Scopes, type ApiKeys, type Scope, type StreamTokens } from "../auth/mod.ts";
import type { Config } from "../config/mod.ts";
import { ID_TOKEN } from "../events/mod.ts";
import type { Stats } from "../metrics/mod.ts";
import { DOCS_PREFIX } from "./docs.ts";
import type { Logger } from "../util/log.ts";

/**
 * Who may use a route. Every route declares one (`config: { access }`);
 * registering a route without it throws, so none can slip in unguarded.
 * - `public`: anyone (health, the OpenAPI document);
 * - `scope`: a key holding the scope (admin keys hold every scope); with
 *   `tenant: "param"`, a tenant key only for its own `:tenant`, which must
 *   be a valid tenant id on every such route (400 otherwise); with
 *   `streamToken`, a `?token=` from `POST …/unlocks/stream-token` instead of
 *   a key (for `EventSource`, which cannot send headers).
 */
export type Access = { public: true } | { scope: Scope; tenant?: "param"; streamToken?: true };

/** The caller of a request: a key's id, its tenant (null: admin) and scopes; a stream token may bind it to one user. */
export type Principal = { id: string; tenant: string | null; scopes: readonly Scope[]; user?: string };

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** A registered route and who may use it. */
export type DeclaredRoute = { method: string; url: string; access: Access };
const declared = new WeakMap<FastifyInstance, DeclaredRoute[]>();

/** Every route registered on `app` after {@link installAuth}, with its access (HEAD routes included). */
export function declaredRoutes(app: FastifyInstance): readonly DeclaredRoute[] {
  return declared.get(app) ?? [];
}

/** The caller in `auth.mode: none` (local development): everything, no key. */
const DEV: Principal = { id: "dev", tenant: null, scopes: [Scopes.Admin] };

/** Whether `p` may act for `tenant` (admin keys act for every tenant). */
export function actsFor(p: Principal, tenant: string): boolean {
  return p.tenant === null || p.tenant === tenant;
}

function deny(reply: FastifyReply, status: 401 | 403 | 429, error: string, message: string) {
  if (status === 401) reply.header("www-authenticate", 'Bearer realm="achd"');
  return reply.code(status).send({ error, message });
}

/**
 * Installs authentication and authorization: each request to a guarded
 * route must carry `Authorization: Bearer <key>`; 401 without a valid key,
 * 403 for a key without the scope or of another tenant, 429 over the
 * per-key or per-tenant request rate (or after too many failed
 * authentications, bad stream tokens included, from one address), 400 for
 * a `:tenant` that is not a tenant id. Runs on `onRequest`, before the body
 * is read, so an unauthenticated client costs no parsing. Call before any
 * route is registered.
 */
export async function installAuth(app: FastifyInstance, keys: ApiKeys | undefined, config: Config, log: Logger, stats: Pick<Stats, "rateLimited">, tokens?: StreamTokens): Promise<void> {
  app.decorateRequest("principal", null);
  const routes: DeclaredRoute[] = [];
  declared.set(app, routes);
  app.addHook("onRoute", (route) => {
    // The API reference pages (@fastify/swagger-ui) are as public as /openapi.json.
    if (route.url.startsWith(DOCS_PREFIX) && !route.config?.access) route.config = { ...route.config, access: { public: true } };
    const access = route.config?.access;
    if (!access) throw new Error(`route ${String(route.method)} ${route.url} declares no access (config.access): every route must say who may use it`);
    for (const method of [route.method].flat()) routes.push({ method: String(method), url: route.url, access });
  });
  // The plugin's limiters are used from this hook (after authentication), not as a global hook.
  await app.register(rateLimitPlugin, { global: false });
  const { rateLimit } = config.http;
  const window = rateLimit.window;
  const limiter = (max: number, key: (req: FastifyRequest) => string) => (max > 0 ? app.createRateLimit({ max, timeWindow: window, keyGenerator: key }) : undefined);
  const perKey = limiter(rateLimit.perKey, (req) => `k:${req.principal!.id}`);
  const perTenant = limiter(rateLimit.perTenant, (req) => `t:${req.principal!.tenant ?? "(admin)"}`);
  // Failed authentications per client address: guessing keys gets slow quickly.
  const failures = rateLimit.authFailures > 0 ? app.createRateLimit({ max: rateLimit.authFailures, timeWindow: 60_000, keyGenerator: (req) => `ip:${req.ip}` }) : undefined;
  if (!keys) log.warn("auth.mode is none: the HTTP API takes requests without keys (local development only)");
  /** Counts a failed authentication from the request's address; the seconds until it may try again once it failed too often. */
  const failedTooOften = async (req: FastifyRequest): Promise<number | undefined> => {
    const f = failures ? await failures(req) : undefined;
    return f && !f.isAllowed && f.isExceeded ? f.ttlInSeconds : undefined;
  };
  const TOO_OFTEN = "too many failed authentications from this address";

  app.addHook("onRequest", async (req, reply) => {
    const access = req.routeOptions.config.access;
    if (!access || "public" in access) return;
    let p: Principal | undefined = keys ? undefined : DEV;
    const token = (req.query as { token?: unknown } | undefined)?.token;
    if (keys && access.streamToken && tokens && typeof token === "string" && req.headers.authorization === undefined) {
      const grant = await tokens.verify(token);
      if (!grant) {
        const wait = await failedTooOften(req);
        if (wait !== undefined) return tooMany(stats, "auth", reply, wait, TOO_OFTEN);
        return deny(reply, 401, "unauthorized", "the stream token is not valid (expired, or not made by this engine): ask for a new one");
      }
      // Rate limits count per token grant, not over every browser at once.
      p = { id: `token:${grant.tenant}/${grant.user ?? "*"}`, tenant: grant.tenant, scopes: [Scopes.Read], ...(grant.user ? { user: grant.user } : {}) };
    } else if (keys) {
      const h = req.headers.authorization;
      const m = typeof h === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
      const record = m ? await keys.verify(m[1]!) : undefined;
      if (!record) {
        const wait = await failedTooOften(req);
        if (wait !== undefined) return tooMany(stats, "auth", reply, wait, TOO_OFTEN);
        return deny(reply, 401, "unauthorized", h ? "the API key is not valid (unknown, revoked or mistyped)" : "an API key is required: Authorization: Bearer <key>");
      }
      p = { id: record.id, tenant: record.tenant, scopes: record.scopes };
    }
    req.principal = p!;
    if (!grants({ scopes: p!.scopes }, access.scope)) return deny(reply, 403, "forbidden", `this key lacks the ${access.scope} scope`);
    const tenant = (req.params as { tenant?: string }).tenant;
    if (access.tenant === "param" && tenant !== undefined && !actsFor(p!, tenant)) {
      return deny(reply, 403, "forbidden", `this key belongs to tenant ${p!.tenant}, not ${tenant}`);
    }
    for (const limit of [perKey, perTenant]) {
      const r = limit ? await limit(req) : undefined;
      // isAllowed only says whether the caller is on an allow list; isExceeded is the verdict.
      if (r && !r.isAllowed && r.isExceeded) return tooMany(stats, limit === perKey ? "key" : "tenant", reply, r.ttlInSeconds, `over the request rate of ${r.max} per ${Math.round(r.timeWindow / 1000)} s (${limit === perKey ? "per key" : "per tenant"})`);
    }
    // Every `:tenant` route takes a tenant id only (checked here once, after the caller's rights and rates, as a handler would).
    if (access.tenant === "param" && tenant !== undefined && !ID_TOKEN.test(tenant)) return reply.code(400).send({ error: "bad_request", message: `tenant id ${JSON.stringify(tenant)} is not valid` });
  });
}

/** A 429 with `Retry-After` (whole seconds, at least 1), counted by the limit that refused it. */
export function tooMany(stats: Pick<Stats, "rateLimited">, limit: "key" | "tenant" | "auth" | "quota" | "streams", reply: FastifyReply, retryAfterSeconds: number, message: string) {
  stats.rateLimited.add([limit]);
  reply.header("retry-after", String(Math.max(1, Math.ceil(retryAfterSeconds))));
  return deny(reply, 429, "too_many_requests", message);
}

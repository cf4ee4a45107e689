import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { ID_TOKEN } from "../events/mod.ts";
import { serveUnlockStream, type UnlockFilter } from "../notify/mod.ts";
import { tooMany } from "./auth.ts";
import type { ApiContext } from "./context.ts";

type Query = { user?: string; backfill?: string; last_event_id?: string; token?: string };

/** How long a stream token is good for by default, and at most. */
const TOKEN_TTL_MS = 3_600_000;
const TOKEN_TTL_MAX_MS = 86_400_000;

const query = {
  type: "object",
  properties: {
    user: { type: "string", description: "only this user's unlocks" },
    backfill: { type: "string", enum: ["include", "exclude"], default: "exclude", description: "backfilled unlocks (marked backfill: true) too; by default they stay quiet" },
    last_event_id: { type: "integer", minimum: 0, description: "resume after this stream position (what the Last-Event-ID header says; for a client that cannot set headers); a position past the stream's end resumes at its end, with what comes next" },
    token: { type: "string", description: "a stream token (POST …/unlocks/stream-token) instead of an Authorization header, for EventSource" },
  },
};
const describe = "text/event-stream: each unlock as `event: unlock`, `id:` its position in ACH_UNLOCKS, `data:` the unlock body; a comment line as heartbeat; `event: close` with a reason before the server ends a stream";

/**
 * `GET /v1/tenants/:tenant/unlocks/stream` (a tenant's, `read`) and
 * `GET /v1/unlocks/stream` (every tenant's, admin): unlocks as server-sent
 * events, resumable with `Last-Event-ID`.
 */
export function unlockStreamRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const fanout = ctx.unlocks;
  if (!fanout) return;
  const open = new Set<() => void>();
  // Each open stream holds a socket and a listener: a tenant (or the admins, "*") may hold this many at once.
  const perTenant = new Map<string, number>();
  const most = ctx.config.http.sse.maxPerTenant;
  // A stream never ends by itself: end them all before the server closes, or its close would wait for them.
  app.addHook("preClose", async () => {
    for (const end of open) end();
  });
  const serve = (req: FastifyRequest<{ Querystring: Query }>, reply: FastifyReply, tenant: string | undefined) => {
    const { backfill } = req.query;
    // A token made for one user opens that user's stream only.
    const bound = req.principal?.user;
    if (bound !== undefined && req.query.user !== undefined && req.query.user !== bound) return reply.code(403).send({ error: "forbidden", message: `this stream token is for user ${bound}` });
    const user = bound ?? req.query.user;
    if (user !== undefined && !ID_TOKEN.test(user)) return reply.code(400).send({ error: "bad_request", message: `user ${JSON.stringify(user)} is not a valid id` });
    const header = req.headers["last-event-id"];
    const raw = typeof header === "string" && header !== "" ? header : req.query.last_event_id;
    const lastId = raw === undefined ? undefined : Number(raw);
    if (lastId !== undefined && !(Number.isInteger(lastId) && lastId >= 0)) return reply.code(400).send({ error: "bad_request", message: `Last-Event-ID ${JSON.stringify(raw)} is not a stream position (a whole number)` });
    const filter: UnlockFilter = { ...(tenant ? { tenant } : {}), ...(user ? { user } : {}), backfill: backfill === "include" };
    const holder = tenant ?? "*";
    const held = perTenant.get(holder) ?? 0;
    if (held >= most) return tooMany(ctx.stats, "streams", reply, 5, `${tenant ? `tenant ${tenant}` : "the admin stream"} has ${most} unlock streams open, the most it may (http.sse.maxPerTenant); close one first`);
    perTenant.set(holder, held + 1);
    reply.hijack();
    ctx.stats.sseStreams++;
    const onEnd = (why: string) => {
      ctx.stats.sseStreams--;
      ctx.stats.sseEnded.add([why]);
      const left = (perTenant.get(holder) ?? 1) - 1;
      if (left > 0) perTenant.set(holder, left);
      else perTenant.delete(holder);
    };
    const end = serveUnlockStream({ res: reply.raw, fanout, js: ctx.js, jsm: ctx.jsm, log: ctx.log, onEnd }, filter, lastId, { heartbeatMs: ctx.config.http.sse.heartbeat, maxBufferedBytes: ctx.config.http.sse.maxBufferedBytes });
    open.add(end);
    reply.raw.once("close", () => open.delete(end));
  };
  app.get<{ Params: { tenant: string }; Querystring: Query }>(
    "/v1/tenants/:tenant/unlocks/stream",
    { config: { access: { scope: Scopes.Read, tenant: "param", streamToken: true } }, schema: { summary: "A tenant's unlocks as server-sent events, live and resumable (Last-Event-ID); a key or a stream token", tags: ["notifications"], querystring: query, produces: ["text/event-stream"], response: { 200: { description: describe, type: "string" } } } },
    async (req, reply) => serve(req, reply, req.params.tenant),
  );
  const tokens = ctx.streamTokens;
  if (tokens) {
    app.post<{ Params: { tenant: string }; Body: { user?: unknown; ttl_seconds?: unknown } | undefined }>(
      "/v1/tenants/:tenant/unlocks/stream-token",
      {
        config: { access: { scope: Scopes.Read, tenant: "param" } },
        schema: {
          summary: "A short-lived token that opens this tenant's unlock stream (or one user's) without a key: for a browser's EventSource",
          tags: ["notifications"],
          response: { 201: { description: "{ token, expires_at, stream }: the token, when it stops opening streams, and the stream's path with it", type: "object", additionalProperties: true } },
        },
      },
      async (req, reply) => {
        const { tenant } = req.params;
        const b = req.body ?? {};
        if (typeof b !== "object" || Array.isArray(b)) return reply.code(400).send({ error: "bad_request", message: 'the body must be {"user": "…", "ttl_seconds": 3600} (both optional)' });
        if (b.user !== undefined && (typeof b.user !== "string" || !ID_TOKEN.test(b.user))) return reply.code(400).send({ error: "bad_request", message: "user: must be a valid user id" });
        const ttl = b.ttl_seconds === undefined ? TOKEN_TTL_MS : Number(b.ttl_seconds) * 1000;
        if (!Number.isInteger(ttl) || ttl < 1000 || ttl > TOKEN_TTL_MAX_MS) return reply.code(400).send({ error: "bad_request", message: "ttl_seconds: a whole number from 1 to 86400" });
        const exp = Date.now() + ttl;
        const token = await tokens.issue({ tenant, ...(typeof b.user === "string" ? { user: b.user } : {}), exp });
        return reply.code(201).send({ token, expires_at: new Date(exp).toISOString(), stream: `/v1/tenants/${tenant}/unlocks/stream?token=${token}` });
      },
    );
  }
  app.get<{ Querystring: Query }>(
    "/v1/unlocks/stream",
    { config: { access: { scope: Scopes.Admin } }, schema: { summary: "Every tenant's unlocks as server-sent events, live and resumable (Last-Event-ID)", tags: ["notifications"], querystring: query, produces: ["text/event-stream"], response: { 200: { description: describe, type: "string" } } } },
    async (req, reply) => serve(req, reply, undefined),
  );
}

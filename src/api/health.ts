import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { clusterStatus } from "../cluster/mod.ts";
import { consumerName, partitionConsumers, Streams } from "../nats/mod.ts";
import type { ApiContext } from "./context.ts";

const PUBLIC = { config: { access: { public: true as const } } };
const ADMIN = { config: { access: { scope: Scopes.Admin } } };

/** `/healthz` (alive), `/readyz` (NATS, streams, consumers), `/v1/status` (partition owners, lag), `/v1/stats`. */
export function healthRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get("/healthz", PUBLIC, async () => ({ status: "ok" }));
  app.get("/readyz", PUBLIC, async (_req, reply) => {
    const problems: string[] = [];
    if (ctx.nc.isClosed()) problems.push("NATS connection closed");
    else {
      for (const s of Object.values(Streams)) {
        await ctx.jsm.streams.info(s).catch((err: unknown) => problems.push(`stream ${s}: ${(err as Error).message}`));
      }
      if (ctx.config.worker.enabled) {
        const consumers = await partitionConsumers(ctx.jsm).catch(() => new Map());
        for (let k = 0; k < ctx.config.partitions; k++) if (!consumers.has(k)) problems.push(`consumer of partition ${k} (${consumerName(k)}) is missing`);
      }
    }
    if (problems.length) return reply.code(503).send({ status: "not ready", problems });
    return { status: "ready" };
  });
  app.get("/v1/status", ADMIN, async () => clusterStatus(ctx.jsm, ctx.leases, ctx.members, ctx.config.partitions, Date.now()));
  app.get("/v1/stats", ADMIN, async () => {
    const s = ctx.stats.snapshot();
    const received = s.received || 0;
    // Share of received events that did not count again: redeliveries, retries and fingerprint matches.
    const dedupHitRate = received ? ((s.duplicates ?? 0) + (s.fingerprinted ?? 0)) / received : 0;
    return { ...s, dedup_hit_rate: Number(dedupHitRate.toFixed(4)) };
  });
}

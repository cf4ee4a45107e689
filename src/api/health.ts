import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { clusterStatus } from "../cluster/mod.ts";
import { consumerName, partitionConsumers, Streams } from "../nats/mod.ts";
import type { ApiContext } from "./context.ts";

/** `/readyz` answers within this, ready or not. */
const READY_WITHIN_MS = 900;
const PUBLIC = { config: { access: { public: true as const } } };
const ADMIN = { config: { access: { scope: Scopes.Admin } } };

/** `/healthz` (alive), `/readyz` (NATS, streams, consumers), `/v1/status` (partition owners, lag), `/v1/stats`. */
export function healthRoutes(app: FastifyInstance, ctx: ApiContext): void {
  app.get("/healthz", { ...PUBLIC, schema: { summary: "The process is alive", tags: ["operations"], response: { 200: { description: "ok", type: "object" } } } }, async () => ({ status: "ok" }));
  // Answers within READY_WITHIN_MS whatever NATS does: a probe that hangs is a probe that fails.
  app.get("/readyz", { ...PUBLIC, schema: { summary: "NATS answers, and the streams and partition consumers exist (answered within a second)", tags: ["operations"], response: { 200: { description: "ready", type: "object" }, 503: { description: "not ready, with the problems", type: "object" } } } }, async (_req, reply) => {
    const problems: string[] = [];
    const check = async () => {
      if (ctx.nc.isClosed()) return void problems.push("NATS connection closed");
      await Promise.all(Object.values(Streams).map((s) => ctx.jsm.streams.info(s).catch((err: unknown) => void problems.push(`stream ${s}: ${(err as Error).message}`))));
      if (ctx.config.worker.enabled) {
        const consumers = await partitionConsumers(ctx.jsm).catch(() => new Map());
        for (let k = 0; k < ctx.config.partitions; k++) if (!consumers.has(k)) problems.push(`consumer of partition ${k} (${consumerName(k)}) is missing`);
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), READY_WITHIN_MS)));
    const outcome = await Promise.race([check(), late]);
    clearTimeout(timer);
    if (outcome === "late") problems.push(`NATS did not answer within ${READY_WITHIN_MS} ms`);
    if (problems.length) return reply.code(503).header("retry-after", "1").send({ status: "not ready", problems });
    return { status: "ready" };
  });
  app.get("/v1/status", { ...ADMIN, schema: { summary: "Live workers; per partition its owner, lease age and lag; rejected events this API process could not keep", tags: ["operations"], response: { 200: { description: "workers, partitions, dead_letter_failures", type: "object" } } } }, async () => ({
    ...(ctx.engineState ? { engine: ctx.engineState() } : {}),
    ...(await clusterStatus(ctx.jsm, ctx.leases, ctx.members, ctx.config.partitions, Date.now())),
    // Never swallowed: a rejected event the DLQ could not take is counted here (and logged at error).
    dead_letter_failures: ctx.stats.deadLetterFailures,
  }));
  app.get("/v1/stats", { ...ADMIN, schema: { summary: "Counters of this process (received, applied, duplicates, rejected, unlocks, dead_letter_failures, …)", tags: ["operations"], response: { 200: { description: "counters", type: "object" } } } }, async () => {
    const s = ctx.stats.snapshot();
    const received = s.received || 0;
    // Share of received events that did not count again: redeliveries, retries and fingerprint matches.
    const dedupHitRate = received ? ((s.duplicates ?? 0) + (s.fingerprinted ?? 0)) / received : 0;
    return { ...s, dedup_hit_rate: Number(dedupHitRate.toFixed(4)) };
  });
}

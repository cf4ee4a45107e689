import type { FastifyInstance } from "fastify";
import { Scopes } from "../auth/mod.ts";
import { clusterStatus, type PartitionStatus } from "../cluster/mod.ts";
import { Streams } from "../nats/mod.ts";
import { deadLetterCounts, type DeadLetterCounts } from "../pipeline/mod.ts";
import { cachedFor } from "../util/coalesce.ts";
import type { ApiContext } from "./context.ts";

/** How long a partition table and DLQ count are reused (a dashboard polls every second; each costs NATS requests). */
const PARTITIONS_FOR_MS = 1000;
const DLQ_FOR_MS = 2000;

/** `GET /metrics` (Prometheus text format) and `GET /v1/dashboard` (what the dashboard page shows). */
export function metricsRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { metrics, dashboard } = ctx;
  if (metrics) {
    const access = ctx.config.metrics.access === "public" ? { public: true as const } : { scope: Scopes.Metrics };
    app.get("/metrics", { config: { access }, schema: { summary: "Prometheus metrics of this process (text exposition format); the README lists every metric", tags: ["operations"], produces: ["text/plain"] } }, async (_req, reply) => {
      const { body, contentType } = await metrics.text();
      return reply.type(contentType).send(body);
    });
  }
  if (!dashboard) return;
  const partitions = cachedFor<PartitionStatus[]>(PARTITIONS_FOR_MS, async () => (await clusterStatus(ctx.jsm, ctx.leases, ctx.members, ctx.config.partitions, Date.now())).partitions);
  // Counting reads up to 100,000 letters' headers: while the DLQ stream is as it was (no letter added, redriven or
  // aged out), the last count stands.
  let counted: { at: string; counts: DeadLetterCounts } | undefined;
  const dlq = cachedFor<DeadLetterCounts>(DLQ_FOR_MS, async () => {
    const { state } = await ctx.jsm.streams.info(Streams.Dlq);
    const at = `${state.first_seq}/${state.last_seq}/${state.messages}`;
    if (counted?.at !== at) counted = { at, counts: await deadLetterCounts(ctx.js, state) };
    return counted.counts;
  });
  app.get(
    "/v1/dashboard",
    {
      config: { access: { scope: Scopes.Admin } },
      schema: {
        summary: "Everything the dashboard shows, summed over every process: rates over the last minutes, totals, unlock latency, partitions and their owners, top achievements, the DLQ by reason, tenants, the newest unlocks",
        tags: ["operations"],
        response: { 200: { description: "now, processes, series, totals, latency, partitions, top_achievements, dlq, tenants, recent_unlocks", type: "object", additionalProperties: true } },
      },
    },
    async () => {
      // The parts NATS answers may fail on their own (a leader election): the rest of the page still shows.
      const [p, d] = await Promise.allSettled([partitions(), dlq()]);
      return {
        ...dashboard.view(),
        engine: ctx.engineState?.() ?? null,
        partitions: p.status === "fulfilled" ? p.value : [],
        dlq: d.status === "fulfilled" ? d.value : null,
        problems: [p, d].flatMap((r, i) => (r.status === "rejected" ? [`${i === 0 ? "partitions" : "dead letters"}: ${(r.reason as Error).message}`] : [])),
      };
    },
  );
}

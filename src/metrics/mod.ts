/** What the engine counts and measures: the process counters, Prometheus metrics, stats snapshots and the dashboard's view of them. */
export { OTHER, Stats, UNKNOWN, type Observers, type TenantCounts } from "./stats.ts";
export { EngineMetrics, type LiveSources } from "./prometheus.ts";
export { publishSnapshots, STATS_PREFIX, takeSnapshot, type StatsSnapshot } from "./snapshot.ts";
export { DashboardFeed, quantile, type DashboardView } from "./dashboard.ts";
export { serveMetrics } from "./listener.ts";

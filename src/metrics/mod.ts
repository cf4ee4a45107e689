/** What the engine counts and measures: the process counters, Prometheus metrics, stats snapshots and the dashboard's view of them. */
export { Stats, UNKNOWN } from "./stats.ts";
export { EngineMetrics } from "./prometheus.ts";
export { publishSnapshots, takeSnapshot } from "./snapshot.ts";
export { DashboardFeed, type DashboardView } from "./dashboard.ts";
export { serveMetrics } from "./listener.ts";

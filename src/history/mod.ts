/** History as a tool: shadow runs of candidate rule versions, quiet backdated backfills, "as of" answers and user rebuilds, all from the events log. */
export { BACKFILL_RATE, backfill, backfillKey, backfillMarkdown, type BackfillDeps, type BackfillOptions, type BackfillReport } from "./backfill.ts";
export { ConcurrentRunError, HistoryStore, messageOf, REPORTS_LISTED, type ReportBase } from "./reports.ts";
export { shadowMarkdown, shadowRun, withVersion, type Coverage, type ShadowOptions, type ShadowReport, type ShadowRow } from "./shadow.ts";
export { exportLine, fileThenStream, streamEvents, streamHorizon, type Horizon, type StoredEvent, type StreamRange } from "./source.ts";
export { HistoryIncompleteError, rebuildUser, unlockedView, userAsOf, type AsOf, type RebuildDeps, type RebuildReport, type UnlockedView, type UserEvalOptions } from "./user.ts";
export { candidateVersion, storedVersion } from "./versions.ts";

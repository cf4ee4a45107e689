/** History as a tool: shadow runs of candidate rule versions, quiet backdated backfills, "as of" answers and user rebuilds, all from the events log. */
export { backfill, backfillKey, backfillMarkdown, type BackfillDeps, type BackfillOptions, type BackfillReport } from "./backfill.ts";
export { ConcurrentRunError, HistoryStore, reportId, REPORTS_LISTED, type Checkpoint, type ReportBase } from "./reports.ts";
export { coverageLine, diffUnlocks, shadowMarkdown, shadowRun, withVersion, type Coverage, type ShadowOptions, type ShadowReport, type ShadowRow } from "./shadow.ts";
export { ExportFileError, exportLine, fileEvents, fileThenStream, rangeFilter, streamEvents, streamHorizon, type Horizon, type StoredEvent, type StreamRange } from "./source.ts";
export { evaluateUser, HistoryIncompleteError, rebuildUser, unlockedView, userAsOf, type AsOf, type RebuildDeps, type RebuildReport, type UnlockedView, type UserEvalOptions } from "./user.ts";

/** Engine configuration: one zod schema, loaded from file and environment. */
export { ConfigSchema, type Config, type ConfigInput } from "./schema.ts";
export { ConfigError, loadConfig } from "./load.ts";
export { compileConfig } from "./load.ts";
export { deriveTimings, timingIssues, RETRY_BASE_MS, type Timings, type TimingIssue } from "./timings.ts";
export { parseDuration } from "../util/duration.ts";

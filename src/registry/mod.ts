/** Versioned rule sets in KV: file sync, API versions, history, watch. */
export { parseRule, RuleRegistry, type VersionEntry } from "./registry.ts";

/** Versioned rule sets in KV: file sync, API versions, history, watch. */
export { RuleRegistry, type VersionEntry } from "./registry.ts";

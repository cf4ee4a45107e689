/** Versioned rule sets in KV: file sync, API versions, history, watch. */
export * from "./registry.ts";

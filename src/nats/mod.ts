/** NATS plumbing: server binary, the embedded server, streams, buckets and consumers, the engine's credential. */
export * from "./names.ts";
export * from "./errors.ts";
export * from "./server-binary.ts";
export * from "./embedded.ts";
export * from "./topology.ts";
export * from "./requests.ts";
export * from "./credentials.ts";
export * from "./mapping-probe.ts";
export * from "./startup.ts";
export * from "./process.ts";
export * from "./store-lock.ts";
export * from "./ownership.ts";
export * from "./kv.ts";

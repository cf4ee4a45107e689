/** Unlocks to the world beyond NATS: the process's one reader of the unlocks stream, server-sent events, webhooks. */
export { UnlockFanout, type StreamedUnlock } from "./fanout.ts";
export { serveUnlockStream, type SseOptions, type UnlockFilter } from "./sse.ts";
export { WebhookDelivery, WebhookRegistry } from "./webhooks/mod.ts";

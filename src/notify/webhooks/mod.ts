/**
 * Signed webhooks (README "Notifications"): the registry of each tenant's
 * webhooks, their delivery (one durable consumer per webhook, in one
 * process of the deployment at a time) and the outbound bounds.
 */
export { isPrivateAddress, MAX_URL } from "./address.ts";
export { WebhookDelivery, WEBHOOK_LEASE_KEY } from "./delivery.ts";
export { WebhookDeadLetterNotFoundError } from "./journal.ts";
export { MAX_FILTER, WEBHOOK_ID, webhookView, WebhookRequestError, type WebhookView } from "./record.ts";
export { WebhookDisabledError, WebhookRegistry } from "./registry.ts";
export { backoff, retryCap } from "./runner.ts";
export { parseRetryAfter, sendWebhook, signedHeaders } from "./send.ts";

/**
 * Signed webhooks (README "Notifications"): the registry of each tenant's
 * webhooks, their delivery (one durable consumer per webhook, in one
 * process of the deployment at a time) and the outbound bounds.
 */
export { checkWebhookUrl, isPrivateAddress, WebhookAddressError } from "./address.ts";
export { WebhookDelivery, WEBHOOK_LEASE_KEY, type WebhookDeliveryOptions } from "./delivery.ts";
export { WebhookDeadLetterNotFoundError, type WebhookDeadLetter, type WebhookLogEntry } from "./journal.ts";
export { NamedLease, type NamedLeaseRecord } from "./lease.ts";
export { newWebhookSecret, WEBHOOK_ID, webhookConsumerName, webhookView, WebhookRequestError, type WebhookRecord, type WebhookView } from "./record.ts";
export { MAX_WEBHOOKS_PER_TENANT, WEBHOOK_ACK_WAIT_MS, WebhookDisabledError, WebhookRegistry, type Redelivery } from "./registry.ts";
export { backoff, retryCap } from "./runner.ts";
export { MAX_RESPONSE_BYTES, parseRetryAfter, sendWebhook, signedHeaders, type AttemptResult } from "./send.ts";

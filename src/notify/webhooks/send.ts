/**
 * One signed POST of an unlock to a webhook URL, with the outbound bounds:
 * a deadline for the whole exchange, no redirects followed (node:http never
 * follows them), at most {@link MAX_RESPONSE_BYTES} of the answer read, and
 * only public addresses connected to unless private ones are allowed.
 */
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { Webhook } from "standardwebhooks";
import { isPrivateAddress, safeLookup, urlHost, WebhookAddressError } from "./address.ts";

/** How much of a receiver's answer is read (kept in the delivery log as `response`); the rest is dropped. */
export const MAX_RESPONSE_BYTES = 4096;

/** What one attempt came to. */
export type AttemptResult = {
  /** `ok`: a 2xx. `retry`: worth trying again (network error, timeout, 408, 429, 5xx). `fail`: it will not get better (other answers, a refused address). */
  outcome: "ok" | "retry" | "fail";
  /** The HTTP status, when an answer came. */
  status?: number;
  latencyMs: number;
  /** What went wrong, for the log. */
  error?: string;
  /** `Retry-After` of a 429 or 503, in milliseconds. */
  retryAfterMs?: number;
  /** The start of the answer's body (at most {@link MAX_RESPONSE_BYTES}). */
  response?: string;
};

/** The Standard Webhooks headers of one delivery of `body`, signed with `secret` (`whsec_…`). */
export function signedHeaders(secret: string, unlockId: string, body: string, at = new Date()): Record<string, string> {
  // Standard Webhooks timestamps are whole seconds; the signature covers the same value the header carries.
  const seconds = Math.floor(at.getTime() / 1000);
  const signature = new Webhook(secret).sign(unlockId, new Date(seconds * 1000), body);
  return { "webhook-id": unlockId, "webhook-timestamp": String(seconds), "webhook-signature": signature };
}

/** Parses `Retry-After` (seconds or an HTTP date) to milliseconds from now. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/** Options of {@link sendWebhook}. */
export type SendOptions = {
  timeoutMs: number;
  allowPrivate: boolean;
  /** Ends the attempt at once (the engine stops). */
  signal?: AbortSignal;
  /** Connection pools to reuse (keep-alive); one per scheme. */
  agents?: { http: http.Agent; https: https.Agent };
};

/**
 * POSTs `body` (JSON) to `url` with `headers`. Never throws: every failure
 * is an {@link AttemptResult} that says whether trying again may help.
 */
export function sendWebhook(url: URL, body: string, headers: Record<string, string>, opts: SendOptions): Promise<AttemptResult> {
  const started = performance.now();
  const took = () => Math.round(performance.now() - started);
  const host = urlHost(url);
  // Node does not call `lookup` for an IP literal: check it here.
  if (!opts.allowPrivate && isIP(host) && isPrivateAddress(host)) {
    return Promise.resolve({ outcome: "fail", latencyMs: 0, error: `${host} is a loopback, private, link-local or unspecified address (webhooks.allowPrivate allows it)` });
  }
  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    const done = (r: Omit<AttemptResult, "latencyMs">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      resolve({ ...r, latencyMs: took() });
    };
    const https_ = url.protocol === "https:";
    const agent = opts.agents ? (https_ ? opts.agents.https : opts.agents.http) : undefined;
    let req: http.ClientRequest;
    try {
      req = (https_ ? https : http).request(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "achd-webhooks", ...headers, "content-length": String(Buffer.byteLength(body)) },
        ...(agent ? { agent } : {}),
        ...(opts.allowPrivate ? {} : { lookup: safeLookup as never }),
      });
    } catch (err) {
      // A request Node refuses to make (an invalid header value): it will not get better.
      resolve({ outcome: "fail", latencyMs: took(), error: (err as Error).message });
      return;
    }
    const timer = setTimeout(() => {
      req.destroy();
      done({ outcome: "retry", error: `no answer within ${opts.timeoutMs} ms` });
    }, opts.timeoutMs);
    const onAbort = () => {
      req.destroy();
      done({ outcome: "retry", error: "stopped" });
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    req.on("error", (err: NodeJS.ErrnoException) => {
      if (err instanceof WebhookAddressError) return done({ outcome: "fail", error: err.message });
      done({ outcome: "retry", error: err.code ? `${err.code}: ${err.message}` : err.message });
    });
    req.on("response", (res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = () => {
        const response = Buffer.concat(chunks).subarray(0, MAX_RESPONSE_BYTES).toString("utf8");
        const retryAfterMs = status === 429 || status === 503 ? parseRetryAfter(res.headers["retry-after"]) : undefined;
        const base = { status, ...(response ? { response } : {}), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
        if (status >= 200 && status < 300) return done({ outcome: "ok", ...base });
        const retry = status === 408 || status === 429 || status >= 500;
        const what = status >= 300 && status < 400 ? `redirect to ${String(res.headers.location ?? "?").slice(0, 200)} not followed` : `answered ${status}`;
        done({ outcome: retry ? "retry" : "fail", ...base, error: what });
      };
      res.on("data", (c: Buffer) => {
        if (size >= MAX_RESPONSE_BYTES) return;
        chunks.push(c);
        size += c.length;
        // Enough read: the rest of a large answer is not our business.
        if (size >= MAX_RESPONSE_BYTES) {
          finish();
          res.destroy();
        }
      });
      res.on("end", finish);
      // A connection reset in the middle of the body: the status has come; judge by it.
      res.on("error", finish);
      res.on("aborted", finish);
    });
    req.end(body);
  });
}

import type { FastifyInstance } from "fastify";
import { RejectCodes, type RejectCode } from "../events/mod.ts";
import type { DeadLetters } from "../pipeline/mod.ts";
import type { Logger } from "../util/log.ts";

/** A request body that cannot be read as JSON within the bounds; the 400 names the reason. */
export class BodyError extends Error {
  override name = "BodyError";
  readonly statusCode = 400;
  constructor(
    readonly code: RejectCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The deepest nesting of objects and arrays in a JSON text, counted without
 * parsing (brackets inside strings are skipped), stopping as soon as it
 * passes `limit`. Linear in the text and allocation-free, so a hostile
 * body is measured before anything recursive (parsing, validation,
 * serialising) touches it.
 */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max && (max = depth) > limit) return max;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/**
 * Replaces fastify's JSON body parser with one that (1) refuses bodies
 * nested deeper than `maxDepth` before parsing them, and (2) reads
 * `__proto__` and `constructor` keys the way the NATS path does
 * (`JSON.parse`: ordinary own keys), so an event means the same through
 * either door. A body that cannot be read is kept in the DLQ (cut to the
 * dead-letter size) with its reason, like a malformed NATS message, and
 * answered 400.
 */
export function installJsonParser(app: FastifyInstance, opts: { maxDepth: number; dlq: DeadLetters; log: Logger }): void {
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (_req, raw: Buffer, done) => {
    const text = raw.toString("utf8");
    let err: BodyError | undefined;
    let value: unknown;
    const depth = jsonDepth(text, opts.maxDepth);
    if (depth > opts.maxDepth) err = new BodyError(RejectCodes.TooDeep, `(body): nests more than ${opts.maxDepth} levels of objects and arrays (at least ${depth}); at most ${opts.maxDepth}`);
    else {
      try {
        value = text.trim() === "" ? undefined : JSON.parse(text);
      } catch (e) {
        err = new BodyError(RejectCodes.BadJson, `(body): not JSON: ${(e as Error).message}`);
      }
    }
    if (!err) return done(null, value);
    const failure = err;
    opts.dlq
      .send({ data: raw, subject: "(http)", rejection: { code: failure.code, message: failure.message, issues: [{ path: "(body)", message: failure.message }] }, origin: "http" })
      .then(
        () => done(failure, undefined),
        (e: unknown) => {
          opts.log.error({ err: e, reason: failure.code }, "could not keep an unreadable HTTP body in the DLQ");
          done(failure, undefined);
        },
      );
  });
}

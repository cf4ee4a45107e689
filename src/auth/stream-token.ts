import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { isCasFailure } from "../nats/mod.ts";

/** What a stream token lets its bearer open: one tenant's unlock stream (only one user's, when `user` is set), until `exp`. */
export type StreamGrant = { tenant: string; user?: string; exp: number };

/** The bucket key of the secret every API process signs tokens with (in the keys bucket; not a key id, so never listed). */
const SECRET_KEY = "stream-token-secret";
const dec = new TextDecoder();
const enc = new TextEncoder();

const b64 = (b: Buffer | string) => Buffer.from(b).toString("base64url");

/**
 * Short-lived tokens for `EventSource`, which cannot send an Authorization
 * header: a backend holding a tenant key asks for a token (for the tenant,
 * or for one user of it) and hands it to the browser, which opens
 * `…/unlocks/stream?token=…`. A token is its grant and an HMAC-SHA256 of
 * it under a secret shared by every API process through the keys bucket
 * (made once, by whichever process needs it first). It carries no key and
 * grants nothing else; it is checked when a stream opens.
 */
export class StreamTokens {
  #secret: Promise<Buffer> | undefined;

  constructor(private readonly kv: KV) {}

  #key(): Promise<Buffer> {
    this.#secret ??= (async () => {
      // Read, else make; a create that loses to another process reads theirs. Three rounds are plenty.
      for (let round = 0; round < 3; round++) {
        const e = await this.kv.get(SECRET_KEY);
        if (e && e.operation === "PUT") return Buffer.from(dec.decode(e.value), "base64url");
        try {
          await this.kv.create(SECRET_KEY, enc.encode(randomBytes(32).toString("base64url")));
        } catch (err) {
          if (!isCasFailure(err)) throw err;
        }
      }
      throw new Error(`the stream-token secret (${SECRET_KEY} in the keys bucket) could neither be read nor made`);
    })().catch((err: unknown) => {
      this.#secret = undefined;
      throw err;
    });
    return this.#secret;
  }

  async issue(grant: StreamGrant): Promise<string> {
    const body = b64(JSON.stringify(grant));
    return `${body}.${b64(createHmac("sha256", await this.#key()).update(body).digest())}`;
  }

  /** The grant of a valid, unexpired token; undefined for anything else. */
  async verify(token: string, now = Date.now()): Promise<StreamGrant | undefined> {
    const [body, mac, extra] = token.split(".");
    if (!body || !mac || extra !== undefined) return undefined;
    const want = createHmac("sha256", await this.#key()).update(body).digest();
    const got = Buffer.from(mac, "base64url");
    if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined;
    try {
      const g = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as StreamGrant;
      return typeof g.tenant === "string" && typeof g.exp === "number" && g.exp > now ? g : undefined;
    } catch {
      return undefined;
    }
  }
}

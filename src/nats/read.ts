import type { JetStreamClient, JsMsg, OrderedConsumerOptions } from "@nats-io/jetstream";

/**
 * Reads `stream` in order through an ordered consumer made with `opts` (and
 * deleted afterwards), handing each message to `each` (and awaiting it)
 * until it returns (or resolves to) false, `max` messages were read, or
 * nothing more comes (letters deleted meanwhile). Fetches `batch` at a
 * time; each batch is read to its end (or to the last message wanted), so
 * the consumer's next fetch follows on.
 */
export async function readOrdered(js: JetStreamClient, stream: string, opts: Partial<OrderedConsumerOptions>, max: number, each: (m: JsMsg) => boolean | void | Promise<boolean | void>, batch = { size: 500, expires: 5000 }): Promise<void> {
  const c = await js.consumers.get(stream, opts);
  try {
    let left = Math.min(max, (await c.info()).num_pending);
    while (left > 0) {
      let got = 0;
      for await (const m of await c.fetch({ max_messages: Math.min(left, batch.size), expires: batch.expires })) {
        got++;
        left--;
        if ((await each(m)) === false) return;
        if (left === 0) break;
      }
      if (got === 0) return;
    }
  } finally {
    await c.delete().catch(() => undefined);
  }
}

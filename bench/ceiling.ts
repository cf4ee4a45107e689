import { AckPolicy, DeliverPolicy, type JsMsg } from "@nats-io/jetstream";
import { partitionFilter } from "../src/events/mod.ts";
import { deriveTimings } from "../src/config/mod.ts";
import { Streams } from "../src/nats/mod.ts";
import type { OnProgress, Stack } from "./stack.ts";

/** What a bare consumer did: events/s over `count` messages. */
export type CeilingResult = { mode: "ack-each" | "ack-batched"; count: number; seconds: number; perSecond: number };

const dec = new TextDecoder();

/**
 * The physical ceiling of the stack: one plain nats.js pull consumer per
 * partition, in this process, on the same stream the engine reads, that
 * only parses each message (JSON) and acknowledges it — every message
 * (`ack-each`, explicit acks), or the last of every 100 (`ack-batched`,
 * AckAll). Nothing is evaluated or stored.
 */
export async function measureCeiling(stack: Stack, mode: CeilingResult["mode"], expected: number, onProgress?: OnProgress): Promise<CeilingResult> {
  const { jsm, js, config } = stack;
  const names: string[] = [];
  for (let k = 0; k < config.partitions; k++) {
    const name = `bench-ceiling-${mode}-${k}`;
    await jsm.consumers.add(Streams.Events, {
      durable_name: name,
      filter_subject: partitionFilter(k),
      ack_policy: mode === "ack-each" ? AckPolicy.Explicit : AckPolicy.All,
      deliver_policy: DeliverPolicy.All,
      max_ack_pending: config.worker.maxAckPending,
    });
    names.push(name);
  }
  let seen = 0;
  let bad = 0;
  const t0 = performance.now();
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const subs = await Promise.all(
    names.map(async (name) => {
      const c = await js.consumers.get(Streams.Events, name);
      let n = 0;
      return c.consume({
        // Pulled ahead as the engine pulls.
        max_messages: deriveTimings(config).pullAhead,
        callback: (m: JsMsg) => {
          try {
            JSON.parse(dec.decode(m.data));
          } catch {
            bad++;
          }
          n++;
          if (mode === "ack-each" || n % 100 === 0 || m.info.pending === 0) m.ack();
          if (++seen >= expected) done();
          // Every thousandth message: this callback is what is being timed.
          if (onProgress && seen % 1000 === 0) onProgress(seen, expected);
        },
      });
    }),
  );
  await finished;
  onProgress?.(seen, expected);
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(subs.map((s) => s.close()));
  for (const name of names) await jsm.consumers.delete(Streams.Events, name);
  if (bad > 0) throw new Error(`ceiling: ${bad} messages were not JSON`);
  return { mode, count: seen, seconds, perSecond: seen / seconds };
}

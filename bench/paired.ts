import type { EventInput } from "../src/events/mod.ts";
import { measureCeiling } from "./ceiling.ts";
import { measureThroughput, type ThroughputResult } from "./engine.ts";
import { preload, startStack, type Phase } from "./stack.ts";

/** The realistic rule set: the benchmark stream with about one unlock per hundred events. */
export const REALISTIC_RULES = "config/bench/realistic-rules.yaml";

/** The bare one-ack consumer and the engine over one stream, on a stack of their own. */
export type PairedResult = {
  rules: string;
  events: number;
  /** JetStream publishes with acks (2,000 in flight) while loading the stream: the stack's write rate. */
  publishPerSecond: number;
  /** The bare consumer, one ack per message (events/s). */
  bare: number;
  engine: ThroughputResult;
  /** The engine's events/s over the bare consumer's. */
  ratio: number;
  unlocksPerEvent: number;
  /** The nats-server version the stack ran. */
  server?: string;
};

/**
 * Starts a fresh stack with `rules`, loads `events` into it, then runs the
 * bare one-ack consumer and the engine over that same stream, one after
 * the other, and closes the stack. Figures from one such run compare with
 * each other; figures from different runs (other stacks, other minutes of
 * a shared machine) less well.
 */
export async function measurePaired(
  rules: string,
  events: Iterable<EventInput>,
  expected: number,
  stackOpts: { partitions: number; sync?: "default" | "always" },
  label: string,
  phase?: Phase,
): Promise<PairedResult> {
  const stack = await startStack(stackOpts.partitions, stackOpts.sync, { rules });
  try {
    const loaded = await preload(stack.js, events, 2000, phase?.(`${label}: loading`, "events", expected));
    const bare = await measureCeiling(stack, "ack-each", loaded.count, phase?.(`${label}: bare consumer`, "events"));
    const engine = await measureThroughput(stack, loaded.count, phase?.(`${label}: engine`, "events"));
    return {
      rules,
      events: loaded.count,
      publishPerSecond: loaded.perSecond,
      bare: bare.perSecond,
      engine,
      ratio: engine.perSecond / bare.perSecond,
      unlocksPerEvent: engine.unlocks / loaded.count,
      ...(stack.nc.info?.version ? { server: stack.nc.info.version } : {}),
    };
  } finally {
    await stack.close();
  }
}

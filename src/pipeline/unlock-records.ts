import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { UNLOCKED_PREFIX } from "../events/mod.ts";
import { isNotFound, readOrdered, Streams } from "../nats/mod.ts";
import type { UnlockEvent } from "../core/mod.ts";

const dec = new TextDecoder();

/**
 * The record of every unlock: the unlocks stream itself, which holds at
 * most one message per unlock subject (see `UnlockSink`). A record's key
 * is its subject without `ach.unlocked.`:
 * `<tenant>.<user>.<achievement>.<tier|_>.<occurrence>` (`unlockRecordKey`),
 * and filters are subject wildcards on those keys (`acme.>`, `acme.u1.>`).
 */
export class UnlockRecords {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  /** The unlock recorded under `key`, or null. */
  async get(key: string): Promise<UnlockEvent | null> {
    try {
      const m = await this.jsm.streams.getMessage(Streams.Unlocks, { last_by_subj: `${UNLOCKED_PREFIX}.${key}` });
      return m ? (JSON.parse(dec.decode(m.data)) as UnlockEvent) : null;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** Every record whose key matches `filter`, by key, in the order they were stored. */
  async entries(filter = ">"): Promise<Map<string, UnlockEvent>> {
    const out = new Map<string, UnlockEvent>();
    const skip = UNLOCKED_PREFIX.length + 1;
    await readOrdered(this.js, Streams.Unlocks, { filter_subjects: `${UNLOCKED_PREFIX}.${filter}` }, Number.MAX_SAFE_INTEGER, (m) => {
      const key = m.subject.slice(skip);
      // Unlocks published before subjects named them (ach.unlocked.<tenant>.<user>) are no records.
      if (key.split(".").length !== 5) return;
      try {
        out.set(key, JSON.parse(dec.decode(m.data)) as UnlockEvent);
      } catch {
        // not an unlock event: no record
      }
    });
    return out;
  }

  /** The keys of every record matching `filter`. */
  async keys(filter = ">"): Promise<string[]> {
    return [...(await this.entries(filter)).keys()];
  }
}

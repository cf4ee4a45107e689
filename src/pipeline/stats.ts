/** Counters of one worker process, for logs, the API and (later) metrics. */
export class Stats {
  received = 0;
  applied = 0;
  /** Redeliveries and repeated event ids that were not applied again. */
  duplicates = 0;
  /** Events dropped as the same business action as an earlier one (fingerprint dedup). */
  fingerprinted = 0;
  /** Events that arrived after a later event of their user left the reorder window (sequences skip them). */
  late = 0;
  /** Events that matched no rule change (nothing to store). */
  unchanged = 0;
  rejected = 0;
  unlocks = 0;
  /** User states written (one compare-and-set each). */
  stateWrites = 0;
  /** Transient failures retried in-process. */
  retries = 0;
  /** Compare-and-set conflicts on user state. */
  conflicts = 0;
  /** Partition rewinds after a delivery gap or a restart with pending messages. */
  rewinds = 0;
  /** Rejected events the DLQ could not take (each logged at error level). */
  deadLetterFailures = 0;

  snapshot(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>;
  }
}

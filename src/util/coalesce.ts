/**
 * Runs `fn` one call at a time, for work that re-reads a whole source (a
 * bucket, a registry): a trigger while a run waits to start joins it, and a
 * trigger while a run is under way queues one more run, which sees every
 * change made so far. So a burst of changes costs at most two runs. A run
 * that fails goes to `onError` and does not stop later ones.
 */
export function coalesced(fn: () => Promise<void>, onError: (err: unknown) => void): { trigger: () => void; settled: () => Promise<void> } {
  let running = Promise.resolve();
  let queued = false;
  return {
    trigger: () => {
      if (queued) return;
      queued = true;
      running = running.then(() => {
        queued = false;
        return fn().catch(onError);
      });
    },
    settled: () => running,
  };
}

/**
 * Reuses `fn`'s answer for `ms` after it was asked, and shares one request
 * among callers that ask meanwhile (a dashboard polling every second, two
 * gauges of one scrape); a failure is not kept, so the next call asks again.
 */
export function cachedFor<T>(ms: number, fn: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  return () => {
    if (!last || Date.now() - last.at > ms) {
      const value = fn();
      const entry = { at: Date.now(), value };
      last = entry;
      // Only this answer is dropped: a newer one asked meanwhile stays.
      value.catch(() => {
        if (last === entry) last = undefined;
      });
    }
    return last.value;
  };
}

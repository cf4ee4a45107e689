/** Reading the engine's KV buckets as a whole: a snapshot of their entries, and a watch of their changes. */
import { Bucket, type KV, type KvEntry } from "@nats-io/kv";

/**
 * The entries of `kv` whose keys match `pattern` (e.g. `w.*`) as they are
 * now: each key once, live puts only (no deletes, nothing expired), sorted
 * by key. One stream-info request lists the subjects the bucket holds, then
 * one read per key.
 *
 * Not `kv.keys()`: that is a consumer which runs until it delivers a message
 * with nothing pending after it, and the buckets listed here are written
 * several times a second (heartbeats, renewals). A key written during the
 * listing comes again (`w.a, w.b, w.a`: every worker then computes a
 * different plan and partitions move back and forth), and a process slower
 * than the writes keeps chasing them: listings took 13–18 s beside a CPU
 * hog, holding up the coordinator's round and every handover behind it.
 * The registries (rules, tenants, API keys) list their buckets this way too:
 * no consumer is created for a listing.
 */
export async function currentEntries(kv: KV, pattern: string): Promise<KvEntry[]> {
  const keys = kv instanceof Bucket ? await subjectKeys(kv, pattern) : await consumerKeys(kv, pattern);
  const entries = await Promise.all(keys.map((k) => kv.get(k)));
  // A key may expire or be deleted between the listing and its read: it is gone either way.
  return entries.filter((e): e is KvEntry => e !== null && e.operation === "PUT").sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The keys matching `pattern` that the bucket's stream holds a message for (puts and delete markers alike). */
async function subjectKeys(kv: Bucket, pattern: string): Promise<string[]> {
  const si = await kv.jsm.streams.info(kv.stream, { subjects_filter: kv.fullKeyName(kv.encodeKey(pattern)) });
  return Object.keys(si.state.subjects ?? {}).map((s) => kv.decodeKey(s.substring(kv.prefixLen)));
}

/** Fallback for a KV that is not nats.js's bucket (a test double): its listing, each key once. */
async function consumerKeys(kv: KV, pattern: string): Promise<string[]> {
  const keys = new Set<string>();
  for await (const k of await kv.keys(pattern)) keys.add(k);
  return [...keys];
}

/**
 * Calls `onChange` after every change to `kv` (by any process) from now on;
 * the caller reads what it needs again there. A watch that fails is reported
 * to `onError` (never an unhandled rejection). Returns a function that stops
 * watching.
 */
export async function watchChanges(kv: KV, onChange: (e: KvEntry) => void, onError: (err: unknown) => void): Promise<() => void> {
  const w = await kv.watch({ include: "updates" });
  void (async () => {
    for await (const e of w) onChange(e);
  })().catch(onError);
  return () => w.stop();
}

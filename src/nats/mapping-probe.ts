import { headers, nuid, type Msg, type NatsConnection } from "@nats-io/transport-node";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Config } from "../config/mod.ts";
import { EVENTS_PREFIX, partitionMappingBlock, partitionOf, PARTITIONED_PREFIX } from "../events/mod.ts";
import type { Logger } from "../util/log.ts";
import { PROBE_HEADER, PROBE_TENANT, Streams } from "./names.ts";
import { atLeast, parseVersion } from "./server-binary.ts";
import { STARTUP_WAIT_MS } from "../config/timings.ts";
import { isNotFound } from "./errors.ts";
import { StartupTimeoutError } from "./startup.ts";
import { TopologyError, type MappingSite } from "./topology.ts";

const PROBES = 8;
/** Token index of the user id (the probe's id) in `ach.events._ach.<id>.probe` and `ach.p.<k>._ach.<id>.probe`. */
const EVENTS_ID = EVENTS_PREFIX.split(".").length + 1;
const PARTITIONED_ID = PARTITIONED_PREFIX.split(".").length + 2;
const PARTITIONED_K = PARTITIONED_PREFIX.split(".").length;

function missingMappingError(version: [number, number, number], P: number, why: string): TopologyError {
  return new TopologyError(
    `nats-server ${version.join(".")} needs the partition mapping in its config (${why}). Add this to the server config and reload it (nats-server --signal reload):\n\n` +
      `${partitionMappingBlock(P)}\n\n(with ${P} = the engine's partitions setting)`,
  );
}

/**
 * Finds out whether the server maps events to partitions, and refuses a
 * mapping that is wrong or missing. Before 2.10 the mapping must live in the
 * server config; from 2.10 on the stream maps subjects itself, and a server
 * mapping (a config kept from 2.9) is used where it is found.
 * Publishes probes on `ach.events._ach.<id>.probe` (header `Ach-Probe`) and
 * watches where they arrive, telling the outcomes apart:
 *
 * - mapped: each probe arrives on `ach.p.<k>.…` with k the partition the
 *   engine computes — returns `server`;
 * - unmapped: every probe arrives on `ach.events.…` — returns `stream` on
 *   2.10+, else {@link TopologyError} with the lines to add;
 * - wrong: a probe arrives on another partition, or some probes are mapped
 *   and others not (servers of a cluster configured differently) —
 *   {@link TopologyError};
 * - slow: not every probe arrived within `timeoutMs` (default
 *   {@link STARTUP_WAIT_MS}; missing probes are sent again with a growing
 *   wait, since core NATS may drop them under load) —
 *   {@link StartupTimeoutError} naming the wait.
 *
 * Only this call's probes count: engines starting together see each
 * other's probes on the same subjects.
 */
export async function checkPartitionMapping(nc: NatsConnection, jsm: JetStreamManager, config: Config, opts: { timeoutMs?: number; log?: Logger } = {}): Promise<MappingSite> {
  const version = parseVersion(nc.info?.version ?? "0.0.0");
  const streamMaps = atLeast(version, 2, 10);
  const P = config.partitions;
  const timeoutMs = opts.timeoutMs ?? STARTUP_WAIT_MS;
  const ids = Array.from({ length: PROBES }, () => nuid.next());
  const want = new Map(ids.map((id) => [id, partitionOf(PROBE_TENANT, id, P)]));
  const mapped = new Map<string, number>();
  const unmapped = new Set<string>();
  let wake = () => {};
  const on = (idAt: number, record: (id: string, m: Msg) => void) => (err: Error | null, m: Msg) => {
    if (err) return;
    const id = m.subject.split(".")[idAt]!;
    if (!want.has(id)) return;
    record(id, m);
    wake();
  };
  const subs = [
    nc.subscribe(`${PARTITIONED_PREFIX}.*.${PROBE_TENANT}.>`, { callback: on(PARTITIONED_ID, (id, m) => mapped.set(id, Number(m.subject.split(".")[PARTITIONED_K]))) }),
    // With the mapping in place nothing arrives here: the server rewrites the subject before delivery.
    nc.subscribe(`${EVENTS_PREFIX}.${PROBE_TENANT}.>`, { callback: on(EVENTS_ID, (id) => unmapped.add(id)) }),
  ];
  const h = headers();
  h.set(PROBE_HEADER, "1");
  const started = Date.now();
  const wrong = () => (unmapped.size > 0 && (!streamMaps || mapped.size > 0)) || [...mapped].some(([id, k]) => want.get(id) !== k);
  const pending = () => ids.filter((id) => !mapped.has(id) && !unmapped.has(id));
  try {
    for (let round = 0; pending().length > 0 && !wrong(); round++) {
      const left = started + timeoutMs - Date.now();
      if (left <= 0) break;
      for (const id of pending()) nc.publish(`${EVENTS_PREFIX}.${PROBE_TENANT}.${id}.probe`, new Uint8Array(0), { headers: h });
      if (round === 1) opts.log?.warn({ waited_ms: Date.now() - started, bound_ms: timeoutMs }, "partition mapping probes are slow to come back; sending them again");
      await new Promise<void>((res) => {
        const t = setTimeout(res, Math.min(1000 * 2 ** round, 5000, left));
        wake = () => {
          if (pending().length === 0 || wrong()) (clearTimeout(t), res());
        };
      });
    }
  } finally {
    for (const s of subs) s.unsubscribe();
  }
  // The stored copies are of no use to anyone (workers drop them); a busy server may not purge them now, and that is
  // fine, and on a first start there is no stream to purge yet. Anything else is said.
  // (A stream that maps subjects itself stores them under ach.p too.)
  if (mapped.size + unmapped.size > 0) await jsm.streams.purge(Streams.Events, { filter: `${PARTITIONED_PREFIX}.*.${PROBE_TENANT}.>` }).catch((err: unknown) => {
        if (!isNotFound(err)) opts.log?.warn({ err }, "could not purge the partition mapping probes from the events stream; workers skip them");
      });
  if (streamMaps && unmapped.size > 0 && mapped.size > 0) {
    throw new TopologyError(
      `${mapped.size} of ${PROBES} probes were mapped to partitions by the server and ${unmapped.size} were not: the servers of this cluster are configured differently. ` +
        `From nats-server 2.10 on the engine needs no mapping in the server config; remove it from every server (or keep it on every server) and reload them`,
    );
  }
  if (!streamMaps && unmapped.size > 0) throw missingMappingError(version, P, `events published on ${EVENTS_PREFIX}.> are not mapped to partitions`);
  if (wrong()) throw missingMappingError(version, P, "the server maps events to another partition count");
  const missing = pending().length;
  if (missing === 0) return mapped.size > 0 ? "server" : "stream";
  const detail =
    missing === PROBES
      ? `none of ${PROBES} probes came back on ${PARTITIONED_PREFIX}.* or ${EVENTS_PREFIX}.*; if the server maps ${EVENTS_PREFIX}.> to some other subject, replace that mapping with the one \`achd nats-config\` prints`
      : `${PROBES - missing} of ${PROBES} probes came back, all on the right partition; ${missing} did not`;
  throw new StartupTimeoutError("checking the partition mapping", Date.now() - started, detail);
}

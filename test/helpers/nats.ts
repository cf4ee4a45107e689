import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { consumerName, startNatsServer, Streams, type EmbeddedServer } from "../../src/nats/mod.ts";

/** A real nats-server on a free loopback port, in a temp dir, with a client. */
export type TestNats = {
  server: EmbeddedServer;
  url: string;
  dir: string;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Restarts the server on the same port and store (for crash tests). */
  restart(): Promise<void>;
  cleanup(): Promise<void>;
};

/** Starts nats-server with JetStream and the partition mapping for `partitions`. */
export async function startTestNats(partitions: number): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), "achd-test-"));
  const opts = { host: "127.0.0.1", port: -1, dataDir: join(dir, "nats"), partitions };
  let server = await startNatsServer(opts);
  const nc = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const t: TestNats = {
    server,
    url: server.url,
    dir,
    nc,
    js: jetstream(nc),
    jsm: await jetstreamManager(nc),
    async restart() {
      await server.stop();
      server = await startNatsServer({ ...opts, port: server.port });
      t.server = server;
    },
    async cleanup() {
      await nc.close().catch(() => undefined);
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

/** True when every partition's consumer has nothing pending and nothing unacknowledged (undefined otherwise, for `eventually`). */
export async function drained(jsm: JetStreamManager, partitions: number): Promise<true | undefined> {
  for (let k = 0; k < partitions; k++) {
    const i = await jsm.consumers.info(Streams.Events, consumerName(k));
    if (i.num_pending > 0 || i.num_ack_pending > 0) return undefined;
  }
  return true;
}

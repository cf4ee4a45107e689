import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { atLeast, binaryVersion, natsServerBinary, partitionsDrained, startNatsServer } from "../../src/nats/mod.ts";
import type { Stack } from "../../bench/stack.ts";

/** A real nats-server on a free loopback port, in a temp dir, with a client (the bench's stack, without topology). */
export type TestNats = Pick<Stack, "server" | "url" | "dir" | "nc" | "js" | "jsm"> & {
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

/** {@link partitionsDrained}, as `true | undefined` for `eventually`. */
export async function drained(jsm: JetStreamManager, partitions: number): Promise<true | undefined> {
  return (await partitionsDrained(jsm, partitions)) || undefined;
}

/** A free TCP port on loopback (bind port 0, read it, close). */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A three-node JetStream cluster of real nats-server processes on loopback. */
export type TestCluster = {
  urls: string[];
  /** Comma-separated, as NATS_URL takes it. */
  url: string;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  names: string[];
  /** Kills node `i` (SIGKILL) and starts it again on the same ports and store. */
  bounce(i: number, downMs?: number): Promise<void>;
  cleanup(): Promise<void>;
};

/** Starts a three-node cluster with JetStream and the partition mapping for `partitions`. */
export async function startTestCluster(partitions: number): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), "achd-cluster-"));
  const client = [await freePort(), await freePort(), await freePort()];
  const routes = [await freePort(), await freePort(), await freePort()];
  const names = ["n1", "n2", "n3"];
  const opts = names.map((name, i) => ({
    host: "127.0.0.1",
    port: client[i]!,
    dataDir: join(dir, name),
    partitions,
    extraConfig: `server_name: ${name}\ncluster {\n  name: achd-test\n  listen: 127.0.0.1:${routes[i]}\n  routes: [${routes.map((r) => `nats-route://127.0.0.1:${r}`).join(", ")}]\n}\n`,
  }));
  const servers = await Promise.all(opts.map((o) => startNatsServer(o)));
  const urls = client.map((p) => `nats://127.0.0.1:${p}`);
  const nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  // JetStream answers once the cluster has elected its metadata leader.
  let jsm: JetStreamManager | undefined;
  try {
    for (let attempt = 0; !jsm; attempt++) {
      jsm = await jetstreamManager(nc).catch((err: unknown) => {
        if (attempt > 60) throw err;
        return new Promise<undefined>((r) => setTimeout(() => r(undefined), 500));
      });
    }
  } catch (err) {
    // Do not leave servers behind.
    await nc.close().catch(() => undefined);
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const c: TestCluster = {
    urls,
    url: urls.join(","),
    nc,
    js: jetstream(nc),
    jsm,
    names,
    async bounce(i, downMs = 1500) {
      await servers[i]!.kill();
      await new Promise((r) => setTimeout(r, downMs));
      servers[i] = await startNatsServer(opts[i]!);
    },
    async cleanup() {
      await nc.close().catch(() => undefined);
      await Promise.all(servers.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return c;
}

/** The version of the nats-server the tests run (`ACH_NATS_SERVER`, else the newest on the machine). */
export const SERVER_VERSION = binaryVersion(natsServerBinary());
/** True on nats-server 2.10+: streams map subjects themselves, `sync_interval` exists. Tests of 2.9-only behaviour run only where this is false. */
export const SERVER_2_10 = atLeast(SERVER_VERSION, 2, 10);
/** The version as text, for test names: `nats-server 2.15.3`. */
export const SERVER_NAME = `nats-server ${SERVER_VERSION.join(".")}`;

/**
 * A three-node JetStream cluster whose nodes are separate hosts: each
 * nats-server runs in its own Linux network namespace, with one veth to a
 * bridge in a fourth ("hub") namespace; the root namespace (the test and the
 * engine's worker children) reaches the bridge through one more veth. A node
 * is cut off by taking its port on the bridge down, and healed by bringing it
 * up again: its process and its TCP connections stay, only the packets stop.
 *
 * Needs root and `ip` (iproute2). Every name has a random suffix and the
 * subnet is a random 10.77.<x>.0/24 free on this machine, so runs in parallel
 * do not clash. Cleanup removes the servers, links and namespaces; it also
 * runs when setup fails half-way, and (synchronously) when the process exits.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { natsServerBinary, startNatsServer, type EmbeddedServer } from "../../src/nats/mod.ts";

const IP = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].find((p) => {
  try {
    execFileSync(p, ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
});

function ip(...args: string[]): string {
  if (!IP) throw new Error("ip (iproute2) not found");
  return execFileSync(IP, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 10_000 });
}

/** Root, `ip` present, and a trial namespace can be made and removed (checked once, at load time). */
export const canMakeNamespaces: boolean = (() => {
  if (process.platform !== "linux" || process.getuid?.() !== 0 || !IP) return false;
  const name = `achtrial${process.pid}${Math.random().toString(16).slice(2, 6)}`;
  try {
    ip("netns", "add", name);
  } catch {
    return false;
  }
  try {
    ip("netns", "del", name);
    return true;
  } catch {
    return false;
  }
})();

/** A free 10.77.<x> prefix: no address or route of this machine is in it. */
function freeSubnet(): string {
  const used = ip("-4", "addr") + ip("-4", "route", "show", "table", "all");
  for (let i = 0; i < 200; i++) {
    const x = Math.floor(Math.random() * 256);
    if (!used.includes(`10.77.${x}.`)) return `10.77.${x}`;
  }
  throw new Error("no free 10.77.x.0/24 subnet");
}

/** What cleanup removes; kept in a module-level set for the exit handler. */
type Resources = { namespaces: string[]; links: string[]; servers: EmbeddedServer[]; dir: string };
const live = new Set<Resources>();
let exitHook = false;

function removeSync(r: Resources): void {
  for (const s of r.servers) {
    if (s.process.exitCode === null && s.process.signalCode === null) s.process.kill("SIGKILL");
  }
  // Deleting a root-side veth deletes its peer; deleting a namespace deletes the veths in it (and their peers).
  for (const l of r.links) {
    try {
      ip("link", "del", l);
    } catch {
      // Already gone.
    }
  }
  for (const ns of r.namespaces) {
    try {
      ip("netns", "del", ns);
    } catch {
      // Already gone.
    }
  }
  rmSync(r.dir, { recursive: true, force: true });
  live.delete(r);
}

export type NetnsCluster = {
  /** The client URLs of the nodes, in node order. */
  urls: string[];
  /** Comma-separated, as NATS_URL takes it. */
  url: string;
  /** The nodes' server names (`n1`…), in node order. */
  names: string[];
  /** The nodes' namespaces, in node order. */
  namespaces: string[];
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Each node's log, in node order. */
  logs: string[][];
  /** The name of the node that process `pid` (in the root namespace) has a client connection to, or undefined. */
  nodeOf(pid: number): string | undefined;
  /** Takes node `i`'s port on the bridge down: no packet to or from it passes. */
  cut(i: number): void;
  /** Brings node `i`'s port on the bridge up again. */
  heal(i: number): void;
  cleanup(): Promise<void>;
};

/** Starts three nats-server nodes in namespaces of their own, clustered, with JetStream (and the partition mapping before 2.10). */
export async function startNetnsCluster(partitions: number): Promise<NetnsCluster> {
  const tag = Math.random().toString(16).slice(2, 8).padEnd(6, "0");
  const net = freeSubnet();
  const r: Resources = { namespaces: [], links: [], servers: [], dir: mkdtempSync(join(tmpdir(), "achd-netsplit-")) };
  live.add(r);
  if (!exitHook) {
    exitHook = true;
    process.once("exit", () => [...live].forEach(removeSync));
  }
  const names = ["n1", "n2", "n3"];
  const addrs = names.map((_, i) => `${net}.${11 + i}`);
  const namespaces = names.map((n) => `ach-${tag}-${n}`);
  const hub = `ach-${tag}-hub`;
  // Link names are at most 15 characters.
  const rootLink = `achr${tag}`;
  const bridgePorts = names.map((_, i) => `achb${i + 1}${tag}`);
  const logs: string[][] = names.map(() => []);
  let nc: NatsConnection | undefined;
  try {
    ip("netns", "add", hub);
    r.namespaces.push(hub);
    ip("-n", hub, "link", "add", "br0", "type", "bridge");
    ip("-n", hub, "link", "set", "br0", "up");
    ip("-n", hub, "link", "set", "lo", "up");
    // The root namespace's way in: one end here with the subnet's .1, the other a port of the bridge.
    ip("link", "add", rootLink, "type", "veth", "peer", "name", `achp${tag}`, "netns", hub);
    r.links.push(rootLink);
    ip("-n", hub, "link", "set", `achp${tag}`, "master", "br0");
    ip("-n", hub, "link", "set", `achp${tag}`, "up");
    ip("addr", "add", `${net}.1/24`, "dev", rootLink);
    ip("link", "set", rootLink, "up");
    for (let i = 0; i < names.length; i++) {
      const ns = namespaces[i]!;
      ip("netns", "add", ns);
      r.namespaces.push(ns);
      ip("-n", ns, "link", "set", "lo", "up");
      // Made in the hub (bridge side) with its peer moved into the node's namespace as eth0.
      ip("-n", hub, "link", "add", bridgePorts[i]!, "type", "veth", "peer", "name", "eth0", "netns", ns);
      ip("-n", hub, "link", "set", bridgePorts[i]!, "master", "br0");
      ip("-n", hub, "link", "set", bridgePorts[i]!, "up");
      ip("-n", ns, "addr", "add", `${addrs[i]}/24`, "dev", "eth0");
      ip("-n", ns, "link", "set", "eth0", "up");
    }
    const real = natsServerBinary();
    const opts = names.map((name, i) => {
      const wrapper = join(r.dir, `nats-server-${name}.sh`);
      writeFileSync(wrapper, `#!/bin/sh\nexec ${IP} netns exec ${namespaces[i]} ${JSON.stringify(real)} "$@"\n`);
      chmodSync(wrapper, 0o755);
      return {
        binary: wrapper,
        host: addrs[i]!,
        port: 4222,
        dataDir: join(r.dir, name),
        partitions,
        onLog: (line: string) => logs[i]!.push(line),
        extraConfig: `server_name: ${name}\ncluster {\n  name: achd-netsplit\n  listen: ${addrs[i]}:6222\n  routes: [${addrs.map((a) => `nats-route://${a}:6222`).join(", ")}]\n}\n`,
      };
    });
    const started = await Promise.allSettled(opts.map((o) => startNatsServer(o)));
    for (const s of started) if (s.status === "fulfilled") r.servers.push(s.value);
    const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
    const urls = addrs.map((a) => `nats://${a}:4222`);
    // Short pings: a connection to a node that is cut off is given up within seconds, not the default minutes.
    nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 100, timeout: 2000, pingInterval: 1000, maxPingOut: 3 });
    let jsm: JetStreamManager | undefined;
    // JetStream answers once the cluster has elected its metadata leader.
    for (let attempt = 0; !jsm; attempt++) {
      jsm = await jetstreamManager(nc).catch((err: unknown) => {
        if (attempt > 60) throw err;
        return new Promise<undefined>((res) => setTimeout(() => res(undefined), 500));
      });
    }
    const conn = nc;
    return {
      urls,
      url: urls.join(","),
      names,
      namespaces,
      nc: conn,
      js: jetstream(conn),
      jsm,
      logs,
      nodeOf(pid) {
        // `ss` lists the process's TCP connections with their peers: the node is the one whose client port it talks to.
        const out = execFileSync("ss", ["-tnpH", "state", "established"], { encoding: "utf8", timeout: 10_000 });
        for (const line of out.split("\n")) {
          if (!line.includes(`pid=${pid},`)) continue;
          const k = addrs.findIndex((a) => line.includes(` ${a}:4222 `));
          if (k >= 0) return names[k];
        }
        return undefined;
      },
      cut(i) {
        ip("-n", hub, "link", "set", bridgePorts[i]!, "down");
      },
      heal(i) {
        ip("-n", hub, "link", "set", bridgePorts[i]!, "up");
      },
      async cleanup() {
        await conn.close().catch(() => undefined);
        // Heal first, so the servers' graceful stop does not wait on a dead link.
        for (const p of bridgePorts) {
          try {
            ip("-n", hub, "link", "set", p, "up");
          } catch {
            // Gone already.
          }
        }
        await Promise.all(r.servers.map((s) => s.stop(5000)));
        removeSync(r);
      },
    };
  } catch (err) {
    await nc?.close().catch(() => undefined);
    await Promise.all(r.servers.map((s) => s.stop(5000)));
    removeSync(r);
    throw err;
  }
}

/**
 * One owner per data folder (issue 12, "Data loss"): a second engine on the
 * folder refuses and names the holder; the embedded nats-server never
 * outlives its engine — on SIGTERM, on an uncaught error, and after SIGKILL
 * the next start finds it and stops it.
 */
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { acquireStoreLock, claimStore, isAlive, lockFile, natsServerBinary, processStartTime, serverConfigFile, StoreLockedError, type LockHolder } from "../../src/nats/mod.ts";
import { startEngine } from "../../src/engine.ts";
import { startChild, type ChildEngine } from "../helpers/child.ts";
import { eventually, testConfig } from "../helpers/engine.ts";
import { ev } from "../helpers/stream.ts";

const run = promisify(execFile);

function field(child: ChildEngine, msg: string, name: string): unknown {
  const line = child.output.find((l) => l.includes(`"msg":"${msg}"`));
  return line ? (JSON.parse(line) as Record<string, unknown>)[name] : undefined;
}

function readLock(dir: string): LockHolder {
  return JSON.parse(readFileSync(lockFile(dir), "utf8")) as LockHolder;
}

/** The pid of a process that has exited (and been reaped): no process has it now. */
async function deadPid(): Promise<number> {
  const c = spawn("true");
  await new Promise((r) => c.once("exit", r));
  return c.pid!;
}

describe("one engine per data folder, and its nats-server never outlives it", () => {
  let root: string;
  let dir: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "achd-own-"));
    dir = join(root, "data");
  });
  const children: ChildEngine[] = [];
  afterAll(async () => {
    for (const c of children) await c.kill("SIGKILL");
    rmSync(root, { recursive: true, force: true });
  });

  const start = (env: Record<string, string> = {}) => {
    const c = startChild("", "start", { NATS_URL: "", ACH_DATA_DIR: dir, ACH_NATS_PORT: "-1", PORT: "0", ...env });
    children.push(c);
    return c;
  };
  const started = async (c: ChildEngine) => {
    await c.waitFor('"msg":"HTTP API listening"', 45_000);
    return { api: field(c, "HTTP API listening", "url") as string, server: field(c, "embedded nats-server started", "server_pid") as number };
  };
  const key = () => readFileSync(join(dir, "auth", "admin.key"), "utf8").trim();
  const post = (api: string, body: unknown) => fetch(`${api}/v1/events`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${key()}` }, body: JSON.stringify(body) });
  const lessons = async (api: string, user: string): Promise<number | undefined> => {
    const r = await fetch(`${api}/v1/tenants/globex/users/${user}/achievements`, { headers: { authorization: `Bearer ${key()}` } });
    if (r.status !== 200) return undefined;
    const body = (await r.json()) as { unlocked: { achievement_id: string }[]; in_progress: { achievement_id: string; current: number }[] };
    if (body.unlocked.some((u) => u.achievement_id === "five-lessons")) return 5;
    return body.in_progress.find((p) => p.achievement_id === "five-lessons")?.current ?? 0;
  };
  /** Events accepted (HTTP 200) per user: each user gets at most 4, so five-lessons shows the count. */
  const accepted = new Map<string, number>();
  const allApplied = (api: string) =>
    eventually(
      async () => {
        for (const [user, n] of accepted) if ((await lessons(api, user)) !== n) return undefined;
        return true;
      },
      30_000,
      "every accepted event applied",
    );

  it("refuses a second engine on the folder, naming the holder, and loses no accepted event; SIGTERM leaves no nats-server", async () => {
    const first = start();
    const a = await started(first);
    const conf = readFileSync(serverConfigFile(dir), "utf8");
    expect(readLock(dir)).toMatchObject({ pid: first.process.pid, host: hostname(), server_pid: a.server });

    // A producer posts while a second engine tries the same folder (on another port, as the old advice said).
    const producer = (async () => {
      for (let i = 0; i < 120; i++) {
        const user = `own-${i % 30}`;
        const e = ev("globex", user, "lesson.completed", { duration_seconds: 90 });
        let res = await post(a.api, e);
        // Over the API's rate limit: wait as told and send the same event again.
        while (res.status === 429) {
          await new Promise((r) => setTimeout(r, Number(res.headers.get("retry-after") ?? 1) * 1000));
          res = await post(a.api, e);
        }
        if (res.status === 200) accepted.set(user, (accepted.get(user) ?? 0) + 1);
      }
    })();
    const second = start();
    const code = await new Promise<number | null>((r) => second.process.once("exit", r));
    await producer;
    expect(code).toBe(1);
    const said = second.output.join("\n");
    expect(said).toContain(`in use by achd pid ${first.process.pid}`);
    expect(said).toContain(`kill ${first.process.pid}`);
    expect(said).not.toContain("nats-server started");
    // It wrote nothing into the folder: the first engine's server config and lock are as they were.
    expect(readFileSync(serverConfigFile(dir), "utf8")).toBe(conf);
    expect(readLock(dir).pid).toBe(first.process.pid);
    expect(isAlive(a.server)).toBe(true);

    expect([...accepted.values()].reduce((x, y) => x + y, 0)).toBe(120);
    await allApplied(a.api);

    expect(await first.kill("SIGTERM")).toBe(0);
    expect(isAlive(a.server)).toBe(false);
    expect(() => readLock(dir)).toThrow(/ENOENT/);
  });

  it("after a SIGKILL the next start finds the engine's server gone or stops it, and keeps the data", async () => {
    const first = start();
    const a = await started(first);
    await first.kill("SIGKILL");
    const next = start();
    const b = await started(next);
    expect(isAlive(a.server)).toBe(false);
    expect(next.output.join("\n")).toContain("took over the data folder's lock from an engine that is gone");
    await allApplied(b.api);
    expect(await next.kill("SIGTERM")).toBe(0);
    expect(isAlive(b.server)).toBe(false);
  });

  it("stops a nats-server left running by a SIGKILLed engine (a platform without setpriv) before starting its own", async () => {
    // Without setpriv in PATH the kernel does not stop the server with its parent: the leftover is real.
    const bin = join(root, "bin");
    mkdirSync(bin, { recursive: true });
    symlinkSync((await run("bash", ["-c", "command -v bash"])).stdout.trim(), join(bin, "bash"));
    const first = start({ PATH: bin, ACH_NATS_SERVER: natsServerBinary() });
    const a = await started(first);
    await first.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 500));
    expect(isAlive(a.server)).toBe(true);
    expect(readLock(dir).server_pid).toBe(a.server);

    const next = start();
    const b = await started(next);
    expect(isAlive(a.server)).toBe(false);
    expect(field(next, "stopped the leftover nats-server", "server_pid")).toBe(a.server);
    const user = "own-after-leftover";
    expect((await post(b.api, ev("globex", user, "lesson.completed"))).status).toBe(200);
    accepted.set(user, 1);
    await allApplied(b.api);
    expect(await next.kill("SIGTERM")).toBe(0);
    expect(isAlive(b.server)).toBe(false);
  });

  it("stops its nats-server when the engine process dies of an uncaught error, and the next owner takes over", async () => {
    const own = join(root, "uncaught");
    const script = `
      const { claimStore, startNatsServer } = await import(${JSON.stringify(new URL("../../src/nats/mod.ts", import.meta.url).href)});
      const log = { info() {}, warn() {} };
      const claim = await claimStore(${JSON.stringify(own)}, log);
      const server = await startNatsServer({ host: "127.0.0.1", port: -1, dataDir: ${JSON.stringify(own)}, dieWithParent: false });
      claim.attach(server);
      console.log(String(server.process.pid));
      setTimeout(() => { throw new Error("boom"); }, 10);
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    expect(code, out).toBe(1);
    expect(out).toContain("boom");
    const server = Number(out.split("\n")[0]);
    await eventually(() => (isAlive(server) ? undefined : true), 15_000, "the server gone");
    // The lock stayed, naming the server, until it was gone; the next owner takes it over.
    expect(readLock(own).server_pid).toBe(server);
    const claim = await claimStore(own, pino({ level: "silent" }));
    expect(claim.lock.previous?.reason).toMatch(/is not running/);
    claim.release();
  });
});

describe("the data folder's lock", () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "achd-lock-"));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("takes over a lock whose process is gone, or whose pid now belongs to another program; refuses a live holder", async () => {
    const dir = join(root, "stale");
    mkdirSync(dir);
    const write = (h: Partial<LockHolder>) => writeFileSync(lockFile(dir), JSON.stringify({ host: hostname(), since: "2026-01-01T00:00:00.000Z", token: `t-${Math.random()}`, ...h }));

    write({ pid: await deadPid() });
    const logs: string[] = [];
    const config = testConfig("", { nats: { embedded: { port: -1 } }, dataDir: dir, http: { enabled: false }, partitions: 4 });
    const engine = await startEngine(config, pino({ level: "info" }, { write: (s: string) => void logs.push(s) }));
    try {
      const took = logs.find((l) => l.includes("took over the data folder's lock"));
      expect(took).toMatch(/"reason":"pid \d+ is not running"/);
      expect(readLock(dir).pid).toBe(process.pid);
      // A second engine in the same process is refused as well.
      const err = await startEngine({ ...config }, pino({ level: "silent" })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreLockedError);
      expect(String(err)).toMatch(/another engine in this same process/);
    } finally {
      await engine.stop();
    }
    expect(() => readLock(dir)).toThrow(/ENOENT/);

    // A live pid whose start time is not the holder's: the pid was reused.
    const sleeper = spawn("sleep", ["30"]);
    try {
      write({ pid: sleeper.pid!, start: "1" });
      const lock = acquireStoreLock(dir);
      expect(lock.previous?.reason).toMatch(/now belongs to another program/);
      lock.release();
      // The same pid with its own start time holds the folder.
      write({ pid: sleeper.pid!, start: processStartTime(sleeper.pid!)! });
      expect(() => acquireStoreLock(dir)).toThrow(new RegExp(`in use by achd pid ${sleeper.pid}`));
    } finally {
      sleeper.kill("SIGKILL");
    }
  });

  it("lets exactly one of many processes take a stale lock over at the same moment", async () => {
    const dir = join(root, "race");
    mkdirSync(dir);
    writeFileSync(lockFile(dir), JSON.stringify({ pid: await deadPid(), host: hostname(), since: "2026-01-01T00:00:00.000Z", token: "stale" }));
    // Each process loads, says "ready", and tries on "go"; the winner holds the lock until its stdin closes.
    const script = `
      const { acquireStoreLock } = await import(${JSON.stringify(new URL("../../src/nats/mod.ts", import.meta.url).href)});
      console.log("ready");
      process.stdin.once("data", () => {
        try { acquireStoreLock(${JSON.stringify(dir)}); console.log("won"); }
        catch (err) { console.log(err.name); }
        process.stdin.resume();
      });
    `;
    const procs = Array.from({ length: 5 }, () => {
      const c = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "inherit"] });
      let out = "";
      c.stdout.on("data", (b: Buffer) => (out += b.toString()));
      const line = (n: number) => eventually(() => out.split("\n")[n - 1] || undefined, 30_000, `line ${n} of a locking process`);
      return { c, line };
    });
    await Promise.all(procs.map((p) => p.line(1)));
    for (const p of procs) p.c.stdin.write("go\n");
    const outcomes = await Promise.all(procs.map((p) => p.line(2)));
    for (const p of procs) p.c.stdin.end();
    await Promise.all(procs.map((p) => new Promise((r) => (p.c.exitCode === null ? p.c.once("exit", r) : r(null)))));
    expect(outcomes.filter((o) => o === "won")).toHaveLength(1);
    expect(outcomes.filter((o) => o === "StoreLockedError")).toHaveLength(4);
  });
});

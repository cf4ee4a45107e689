import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startEngine, type Engine } from "../../src/engine.ts";
import { Buckets, natsBinaryIfPresent, Streams } from "../../src/nats/mod.ts";
import { TenantRegistry } from "../../src/tenants/mod.ts";
import { createLogger } from "../../src/util/log.ts";
import { eventually, testConfig } from "../helpers/engine.ts";
import { storedUnlocks } from "../helpers/stream.ts";

const README = fileURLToPath(new URL("../../README.md", import.meta.url));
const MARK = "<!-- run by test/integration/nats-cli.test.ts -->";

/** The shell commands of each README block marked {@link MARK}: continuation lines joined, comments dropped. */
export function readmeCommands(text: string): string[][] {
  const blocks: string[][] = [];
  for (const part of text.split(MARK).slice(1)) {
    const m = /^\s*```sh\n([\s\S]*?)```/.exec(part);
    if (!m) throw new Error(`a README block marked ${MARK} is not a sh code block`);
    const commands = m[1]!
      .replace(/\\\n\s*/g, "")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    blocks.push(commands);
  }
  return blocks;
}

// The official CLI, an independent client: built by .ci/run (scripts/ensure-nats-server.sh cli); where it is missing, these tests say so in their names.
const cli = natsBinaryIfPresent("cli");

describe.runIf(cli)(`the README's \`nats\` CLI examples (${cli ? "natscli" : "no nats CLI on this machine"}), as a tenant on the embedded server`, () => {
  const root = mkdtempSync(join(tmpdir(), "achd-cli-"));
  let engine: Engine;
  const env = () => ({ ...process.env, NATS_URL: engine.natsUrl, PATH: `${dirname(cli!)}${delimiter}${process.env.PATH ?? ""}` });
  let sub: ChildProcess | undefined;

  beforeAll(async () => {
    const config = testConfig("", { nats: { embedded: { port: -1 } }, dataDir: join(root, "data"), http: { enabled: false }, partitions: 4, rules: "config/rules" });
    engine = await startEngine(config, createLogger("silent"));
    const acme = await new TenantRegistry(await new Kvm(engine.nc).open(Buckets.Tenants)).add("acme");
    writeFileSync(join(root, "acme.nk"), `${acme.seed}\n`, { mode: 0o600 });
  });
  afterAll(async () => {
    sub?.kill("SIGKILL");
    await engine?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("publishes with pub and req, deduplicates a retry by Nats-Msg-Id, and delivers the unlock to sub", async () => {
    const [publish, subscribe] = readmeCommands(readFileSync(README, "utf8"));
    expect(publish?.length, "the publishing block").toBe(2);
    expect(subscribe, "the subscribing block").toHaveLength(1);

    // Subscribe first (a core subscription sees what is published after it starts); the tenant credential may.
    let received = "";
    sub = spawn("bash", ["-c", subscribe![0]!], { cwd: root, env: env(), stdio: ["ignore", "pipe", "pipe"] });
    sub.stdout!.on("data", (c: Buffer) => (received += c.toString()));
    sub.stderr!.on("data", (c: Buffer) => (received += c.toString()));
    // A tenant's connection is admitted once the server has reloaded its authorization: retry until the CLI says it listens.
    await eventually(() => (/Subscribing on/.test(received) ? true : undefined), 20_000, `nats sub to start: ${received}`);

    const run = (command: string) => {
      const r = spawnSync("bash", ["-c", command], { cwd: root, env: env(), encoding: "utf8", timeout: 20_000 });
      expect(r.status, `${command}\n${r.stdout}${r.stderr}`).toBe(0);
      return `${r.stdout}${r.stderr}`;
    };
    run(publish![0]!);
    const answer = run(publish![1]!);
    expect(answer).toMatch(/"stream":\s*"ACH_EVENTS"/);
    expect(answer).not.toMatch(/"duplicate":\s*true/);
    // The same request again, as a producer's retry: stored once.
    expect(run(publish![1]!)).toMatch(/"duplicate":\s*true/);

    // The unlock reaches the CLI's subscription, and the engine counted both events once.
    await eventually(() => (/"achievement_id":\s*"first-lesson"/.test(received) ? true : undefined), 20_000, `the first-lesson unlock on nats sub: ${received}`);
    expect(received).toContain("ach.unlocked.acme.user_123");
    const stored = await eventually(async () => {
      const u = (await storedUnlocks(engine.nc, jetstream(engine.nc))).filter((x) => x.user_id === "user_123");
      return u.length >= 1 ? u : undefined;
    });
    expect(stored.map((u) => u.achievement_id)).toEqual(["first-lesson"]);
    // Two events stored, the retry not.
    const info = await (await jetstreamManager(engine.nc)).streams.info(Streams.Events, { subjects_filter: "ach.p.*.acme.user_123.>" });
    expect(Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0)).toBe(2);
  });
});

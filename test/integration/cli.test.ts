/**
 * The command line's contract, through `node bin/achd.js` as a user runs it:
 * every command answers `--help` with its own usage (exit 0); malformed
 * numbers, unknown options and commands and wrong argument counts are usage
 * errors (exit 2) naming what was wrong; a failure is exit 1. None of these
 * needs a NATS server, but the history commands' run, which has one of its own.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/mod.ts";
import { decodeState, userKey } from "../../src/core/mod.ts";
import { partitionOf } from "../../src/events/mod.ts";
import { Buckets, ensureTopology } from "../../src/nats/mod.ts";
import { RuleRegistry } from "../../src/registry/mod.ts";
import { readRuleFiles } from "../../src/rules/mod.ts";
import { testConfig } from "../helpers/engine.ts";
import { startTestNats, type TestNats } from "../helpers/nats.ts";
import { ev, publishAll } from "../helpers/stream.ts";

const BIN = fileURLToPath(new URL("../../bin/achd.js", import.meta.url));
const CONFIG = fileURLToPath(new URL("../fixtures/achd.test.yaml", import.meta.url));
const RULES = fileURLToPath(new URL("../fixtures/rules", import.meta.url));
// NATS_URL points at a port nothing listens on: a command that should not connect and does fails loudly.
const ENV = { ...process.env, ACH_CONFIG: CONFIG, LOG_LEVEL: "silent", NATS_URL: "nats://127.0.0.1:1" };

type Run = { code: number; stdout: string; stderr: string };

/** Runs `achd …args` to its end. */
function achd(...args: string[]): Promise<Run> {
  return achdWith(ENV, ...args);
}

/** Runs `achd …args` with `env` to its end. */
function achdWith(env: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe("achd command line", () => {
  const dir = mkdtempSync(join(tmpdir(), "achd-cli-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const commands = [
    ["start"],
    ["worker"],
    ["api"],
    ["rules"],
    ["rules", "validate"],
    ["partition"],
    ["nats-config"],
    ["tenants"],
    ["tenants", "add"],
    ["tenants", "remove"],
    ["tenants", "list"],
    ["keys"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "redrive"],
    ["simulate"],
    ["status"],
    ["config"],
    ["replay"],
    ["rules", "shadow"],
    ["backfill"],
    ["users"],
    ["users", "rebuild"],
    ["users", "as-of"],
    ["history"],
    ["history", "export"],
    ["history", "horizon"],
    ["bench"],
  ];

  it("prints the overview on --help and exits 0", async () => {
    const r = await achd("--help");
    expect(r).toMatchObject({ code: 0, stderr: "" });
    for (const [cmd] of commands) expect(r.stdout).toContain(`  ${cmd}`);
  });

  // Each case is a process start (~1 s of tsx); a few at a time keep the file short without crowding two cores.
  it.concurrent.for(commands.map((c) => [c.join(" "), c] as const))("achd %s --help prints its own usage and exits 0", async ([, cmd], { expect }) => {
    const r = await achd(...cmd, "--help");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^usage: achd ${cmd.join(" ")}\\b`));
  });

  it.concurrent.for<[string[], RegExp]>([
    [["nats-config", "--partitions", "abc"], /--partitions.*"abc"/],
    [["nats-config", "--partitions", "0"], /--partitions.*1 to 1024/],
    [["nats-config", "--partitions", "1025"], /--partitions/],
    [["nats-config", "--partitions", "1.5"], /--partitions/],
    [["nats-config", "--partitions"], /--partitions/],
    [["nats-config", "--partition", "4"], /Unknown option '--partition'/],
    [["dlq", "show", "x"], /<seq>.*"x"/],
    [["dlq", "show"], /achd dlq show: takes at least 1 argument/],
    [["dlq", "redrive", "1", "0"], /<seq>.*"0"/],
    [["dlq", "list", "--limit", "0"], /--limit.*1 to 1000/],
    [["dlq", "list", "--limit", "1001"], /--limit/],
    [["dlq", "list", "--from", "0"], /--from.*≥ 1/],
    [["dlq", "purge"], /unknown sub-command "purge"/],
    [["replay", "--threads", "0"], /--threads.*1 to 64/],
    [["replay", "--threads", "65"], /--threads/],
    [["replay", "--from", "-3"], /--from/],
    [["simulate"], /--events/],
    [["simulate", "--events", "x.jsonl", "--at", "yesterday"], /--at/],
    [["bench", "--events", "ten"], /--events/],
    [["bench", "--only", "nope"], /--only.*nope/],
    [["partition", "acme"], /takes 2 arguments, got 1/],
    [["partition", "acme", "u1", "u2"], /unexpected "u2"/],
    [["rules", "check"], /unknown sub-command "check"/],
    [["tenants", "list", "extra"], /unexpected "extra"/],
    [["keys", "revoke"], /takes 1 argument, got 0/],
    [["status", "--watch"], /Unknown option '--watch'/],
    [["start", "--port", "1"], /Unknown option '--port'/],
    [["rules", "shadow", "no-such-file.yaml"], /rule-id@version.*"no-such-file.yaml"/],
    [["rules", "shadow", RULES], /holds \d+ rules .*--rule ID/],
    [["rules", "shadow", "first-lesson@1", "--tenant", "a.b"], /--tenant.*"a\.b"/],
    [["backfill", "first-lesson", "--rate", "0"], /--rate.*1 to 100000/],
    [["backfill", "first-lesson", "--from", "yesterday"], /--from must be an RFC 3339 time/],
    [["backfill", "first-lesson", "--from-file", "/nonexistent/export.jsonl"], /--from-file .*no such file/],
    [["users", "as-of", "acme", "u1", "yesterday"], /<time> must be an RFC 3339 time/],
    [["history", "export", "--user", "u1"], /--user needs --tenant/],
  ])("achd %j is a usage error (exit 2) naming what is wrong", async ([args, message], { expect }) => {
    const r = await achd(...args);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
    expect(r.code).toBe(2);
  });

  it("refuses an unknown command, and no command, with exit 2 and the overview", async () => {
    const unknown = await achd("frobnicate");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain("usage: achd <command>");
    const none = await achd();
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("usage: achd <command>");
  });

  it("prints a user's partition under the configured partition count", async () => {
    const partitions = loadConfig({ ACH_CONFIG: CONFIG }).partitions;
    for (const [tenant, user] of [["acme", "u1"], ["globex", "someone-else"]] as const) {
      const r = await achd("partition", tenant, user);
      expect(r).toMatchObject({ code: 0, stdout: `${partitionOf(tenant, user, partitions)}\n` });
    }
  });

  it("prints the mapping for a checked --partitions", async () => {
    const r = await achd("nats-config", "--partitions", "16");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("{{partition(16,");
    expect(r.stdout).not.toContain("NaN");
  });

  it("simulate --progress reports on stderr without a terminal and leaves stdout as it was", async () => {
    const events = join(dir, "progress.jsonl");
    const lines = Array.from({ length: 3000 }, (_, i) =>
      JSON.stringify({ event_id: `p-${i}`, event_type: "lesson.completed", tenant_id: "globex", user_id: `u${i % 10}`, occurred_at: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(), payload: { duration_seconds: 900 } }),
    );
    // Ten users keep stdout far below a pipe's 64 KiB: achd exits with process.exit, which can cut a longer output a slow reader has not drained.
    writeFileSync(events, lines.join("\n") + "\n");
    const [on, off] = await Promise.all([achd("simulate", "--rules", RULES, "--events", events, "--progress"), achd("simulate", "--rules", RULES, "--events", events, "--progress", "--no-progress")]);
    expect([on.code, off.code]).toEqual([0, 0]);
    // The closing line at least (a short run writes no line every 2 s); nothing else on stderr.
    expect(on.stderr).toMatch(/^(simulate: [\d,]+\/3,000 events \(\d+%\), [\d,]+ events\/s, ETA .+\n)*simulate: 3,000 events in [\d.]+ s, [\d,]+ events\/s\n$/);
    expect(on.stderr).not.toContain("\x1b");
    expect(off.stderr).toBe("");
    // Unlocks and each user's progress, as JSON lines, the same with or without the report.
    expect(on.stdout).toBe(off.stdout);
    const out = on.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(out.filter((o) => "progress" in o)).toHaveLength(10);
    expect(out.filter((o) => o.achievement_id === "first-lesson")).toHaveLength(10);
  });

  it("validates good rules (exit 0) and names the rule and the file of a bad one (exit 1)", async () => {
    const good = await achd("rules", "validate", RULES);
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/\d+ rules, all valid/);

    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, 'tenant: "*"\nrules:\n  - id: broken-rule\n    version: 1\n    type: count\n    event: lesson.completed\n    target: -1\n');
    const r = await achd("rules", "validate", bad);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(bad);
    expect(r.stderr).toContain("broken-rule");
  });
});

describe("achd history commands, against a server", () => {
  let nats: TestNats;
  let env: NodeJS.ProcessEnv;
  const dir = mkdtempSync(join(tmpdir(), "achd-cli-history-"));
  // Tenant globex has only the shared rules: g1 three long lessons, g2 one, g3 two.
  const at = (s: number) => new Date(Date.UTC(2026, 3, 13, 10, 0, s)).toISOString();
  const events = [
    ...[1, 2, 3].map((s) => ev("globex", "g1", "lesson.completed", { duration_seconds: 900 }, { occurred_at: at(s) })),
    ev("globex", "g2", "lesson.completed", { duration_seconds: 900 }, { occurred_at: at(4) }),
    ...[5, 6].map((s) => ev("globex", "g3", "lesson.completed", { duration_seconds: 900 }, { occurred_at: at(s) })),
  ];

  beforeAll(async () => {
    nats = await startTestNats(4);
    const config = testConfig(nats.url);
    // The topology and the registry as an engine leaves them, but no worker: nothing is evaluated or recorded.
    const buckets = await ensureTopology(nats.nc, nats.jsm, config);
    await new RuleRegistry(buckets.rules).syncFiles(readRuleFiles(RULES), Date.now());
    await publishAll(nats.js, events);
    env = { ...ENV, NATS_URL: nats.url };
  }, 30_000);
  afterAll(async () => {
    await nats?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it("exports, shadows, backfills (once), answers as-of, rebuilds a corrupt state and tells the horizon", async () => {
    const exported = join(dir, "history.jsonl");
    const ex = await achdWith(env, "history", "export", "--out", exported, "--no-progress");
    expect(ex).toMatchObject({ code: 0, stdout: "" });
    const lines = readFileSync(exported, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { seq: number; body: string });
    expect(lines.map((l) => JSON.parse(l.body).event_id)).toEqual(events.map((e) => e.event_id));

    // five-lessons at target 2 instead of 5: g1 and g3 gain it, read from the export (then the stream after it).
    const candidate = join(dir, "candidate.yaml");
    writeFileSync(candidate, 'tenant: "*"\nrules:\n  - id: five-lessons\n    type: count\n    event: lesson.completed\n    target: 2\n');
    const sh = await achdWith(env, "rules", "shadow", candidate, "--json", "--from-file", exported, "--no-progress");
    expect(sh.stderr).toBe("");
    expect(sh.code).toBe(0);
    const report = JSON.parse(sh.stdout) as { status: string; candidate: { version: number }; totals: { gain: number; lose: number }; achievements: { achievement_id: string; gain: number }[]; coverage: { events: number } };
    expect(report).toMatchObject({ status: "done", candidate: { version: 2 }, totals: { gain: 2, lose: 0 }, coverage: { events: 6 } });
    expect(report.achievements.find((r) => r.achievement_id === "five-lessons")?.gain).toBe(2);
    const md = await achdWith(env, "rules", "shadow", "five-lessons@1", "--no-progress");
    expect(md.code).toBe(0);
    expect(md.stdout).toMatch(/^## Shadow run .*: five-lessons v1/);

    // first-lesson for g1, g2, g3: recorded by the first run, found recorded by the second.
    const first = await achdWith(env, "backfill", "first-lesson", "--json", "--rate", "1000", "--no-progress");
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ status: "done", implied: 3, recorded: 3, already_recorded: 0 });
    const again = await achdWith(env, "backfill", "first-lesson", "--no-progress");
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain("Recorded 0 backdated unlocks (marked backfill: true); 3 were recorded already.");
    // Marked in the user's state too: a worker will not unlock it again.
    const state = await new Kvm(nats.nc).open(Buckets.State);
    expect(Object.keys(decodeState((await state.get(userKey("globex", "g2")))!.value).eval.unlocked)).toEqual(["first-lesson"]);

    const asOf = await achdWith(env, "users", "as-of", "globex", "g1", "2026-04-13T10:00:01.500Z");
    expect(asOf.code, asOf.stderr).toBe(0);
    const then = JSON.parse(asOf.stdout) as { computed_from: string; coverage: { applied_before: number }; unlocked: { achievement_id: string }[] };
    expect(then).toMatchObject({ computed_from: "history", coverage: { applied_before: 1 } });
    expect(then.unlocked.map((u) => u.achievement_id)).toEqual(["first-lesson"]);

    await state.put(userKey("globex", "g1"), new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    const rb = await achdWith(env, "users", "rebuild", "globex", "g1");
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stdout).toMatch(/previous: +corrupt: /);
    const rebuilt = decodeState((await state.get(userKey("globex", "g1")))!.value);
    expect(Object.keys(rebuilt.eval.unlocked)).toContain("first-lesson");

    const hz = await achdWith(env, "history", "horizon");
    expect(hz.code).toBe(0);
    expect(JSON.parse(hz.stdout)).toMatchObject({ first_seq: 1, messages: events.length, complete: true });
    expect(hz.stderr).toMatch(/per million events/);
  }, 60_000);
});

/**
 * The command line's contract, through `node bin/achd.js` as a user runs it:
 * every command answers `--help` with its own usage (exit 0); malformed
 * numbers, unknown options and commands and wrong argument counts are usage
 * errors (exit 2) naming what was wrong; a failure is exit 1. None of these
 * needs a NATS server.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/mod.ts";
import { partitionOf } from "../../src/events/mod.ts";

const BIN = fileURLToPath(new URL("../../bin/achd.js", import.meta.url));
const CONFIG = fileURLToPath(new URL("../fixtures/achd.test.yaml", import.meta.url));
const RULES = fileURLToPath(new URL("../fixtures/rules", import.meta.url));
// NATS_URL points at a port nothing listens on: a command that should not connect and does fails loudly.
const ENV = { ...process.env, ACH_CONFIG: CONFIG, LOG_LEVEL: "silent", NATS_URL: "nats://127.0.0.1:1" };

type Run = { code: number; stdout: string; stderr: string };

/** Runs `achd …args` to its end. */
function achd(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: ENV, timeout: 30_000 }, (err, stdout, stderr) => {
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

/**
 * The package entry (`package.json` `exports["."]` → `src/index.ts`,
 * compiled to `dist/src/index.js`) is the supported surface: these names,
 * no internals. And the benchmark stays out of the library, the start path
 * and the build.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as lib from "../../src/index.ts";
import { importGraph, pathTo, ROOT, tsFilesUnder } from "../helpers/imports.ts";

const json = (file: string) => JSON.parse(readFileSync(join(ROOT, file), "utf8")) as Record<string, any>;

/** Every runtime export of the entry; adding one is a decision, so it is listed here. */
const SURFACE = [
  "ConfigError",
  "ConfigSchema",
  "EventSchema",
  "RuleBook",
  "RuleFileSchema",
  "RuleSchema",
  "RulesError",
  "applyEvents",
  "checkRuleSet",
  "compileRuleSet",
  "createLogger",
  "emptyEvalState",
  "emptyUserState",
  "evaluate",
  "loadConfig",
  "loadRules",
  "progressOf",
  "simulate",
  "startEngine",
  "unlockEvent",
  "validateEvent",
];

describe("the library surface", () => {
  it("package.json exports the entry as compiled by the build, with its types", () => {
    const pkg = json("package.json");
    expect(pkg.exports["."]).toEqual({ types: "./dist/src/index.d.ts", default: "./dist/src/index.js" });
    // dist/src/index.js is where the build puts src/index.ts: outDir dist, rootDir the package, src included, declarations on.
    const base = json("tsconfig.json").compilerOptions;
    const build = json("tsconfig.build.json");
    expect([base.outDir, base.rootDir]).toEqual(["dist", "."]);
    expect(build.include).toContain("src");
    expect(build.compilerOptions.declaration).toBe(true);
    expect(pkg.files).toContain("dist");
  });

  it("exports the engine, the config loader, the schemas, rule loading and validation, and the evaluator — and nothing else", () => {
    expect(Object.keys(lib).sort()).toEqual([...SURFACE].sort());
    for (const name of SURFACE) expect(lib[name as keyof typeof lib], name).toBeDefined();
    expect(typeof lib.startEngine).toBe("function");
    expect(typeof lib.EventSchema.safeParse).toBe("function");
    expect(typeof lib.RuleSchema.safeParse).toBe("function");
  });

  it("every folder's entry (each mod.ts under src/) and the package entry name their exports: no `export *`", () => {
    const entries = ["src/index.ts", ...tsFilesUnder("src").filter((f) => f.endsWith("/mod.ts"))];
    expect(entries.length).toBeGreaterThan(10);
    const star = entries.filter((f) => /^\s*export\s*\*/m.test(readFileSync(join(ROOT, f), "utf8")));
    expect(star).toEqual([]);
  });

  it("keeps the internals out", () => {
    for (const internal of ["PartitionWorker", "Coordinator", "StateStore", "SeenArchive", "UnlockSink", "DeadLetters", "LeaseTable", "buildApi", "ensureTopology", "startNatsServer", "runBench"]) {
      expect(Object.keys(lib), internal).not.toContain(internal);
    }
  });

  it("evaluates rules against events through the entry alone", () => {
    const rules = lib.compileRuleSet([lib.RuleSchema.parse({ id: "first-lesson", type: "count", event: "lesson.completed", target: 1 })]);
    const v = lib.validateEvent({ event_id: "e1", event_type: "lesson.completed", tenant_id: "acme", user_id: "u1", occurred_at: "2026-04-13T10:00:00Z", payload: {} });
    if (!v.ok) throw new Error(v.rejection.message);
    const r = lib.evaluate(lib.emptyEvalState(), v.value, rules);
    expect(r.unlocks.map((u) => u.achievement_id)).toEqual(["first-lesson"]);
    const sim = lib.simulate([v.value.event], lib.loadRules(join(ROOT, "config/rules")));
    expect(sim.unlocks.map((u) => u.achievement_id)).toContain("first-lesson");
  });
});

describe("the benchmark is not part of the library", () => {
  const bench = (f: string) => f.startsWith("bench/") || f.startsWith("src/bench/");

  it("no file of src/ or cmd/ reaches bench/ by a static or literal dynamic import: `achd start` never loads it", () => {
    // cmd/achd.ts loads each command with a literal import(), so its graph holds every command's code.
    const graph = importGraph(["cmd/achd.ts", "src/index.ts", ...tsFilesUnder("src")]);
    expect(graph.has("cmd/run.ts")).toBe(true);
    expect(graph.has("cmd/bench.ts")).toBe(true);
    expect([...graph.keys()].filter(bench).map((f) => pathTo(graph, f))).toEqual([]);
  });

  it("only `achd bench` finds it, at run time", () => {
    const cmd = readFileSync(join(ROOT, "cmd/bench.ts"), "utf8");
    expect(cmd).toContain('new URL("../bench/cli.ts", import.meta.url)');
    expect(tsFilesUnder("bench")).toContain("bench/cli.ts");
  });

  it("is left out of the build, the npm package and the container image", () => {
    expect(json("tsconfig.build.json").include).not.toContain("bench");
    expect(json("package.json").files).not.toContain("bench");
    const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    expect(dockerfile).not.toMatch(/^COPY\s+(\.\/)?bench\b/m);
    expect(dockerfile).not.toMatch(/^COPY\s+\.\s/m);
    expect(readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n")).toContain("bench");
  });
});

import { describe, expect, it } from "vitest";
import { importGraph, importsOf, pathTo, specifiersOf, tsFilesUnder } from "../helpers/imports.ts";

/** Folders and files that do I/O (NATS, HTTP, the file system, threads) — the edges, never part of core. */
const IO = ["src/nats/", "src/pipeline/", "src/state/", "src/api/", "src/cluster/", "src/registry/", "src/tenants/", "src/auth/", "src/replay/", "src/sim/", "src/config/", "src/bench/", "bench/", "cmd/", "src/engine.ts", "src/util/log.ts"];
/** Packages that do I/O, named by prefix. */
const IO_PACKAGES = ["@nats-io/", "fastify", "@fastify/", "pino", "lru-cache", "node:fs", "node:net", "node:http", "node:child_process", "node:worker_threads", "fs", "net", "http", "child_process", "worker_threads"];

const isIoFile = (f: string) => IO.some((p) => f === p || f.startsWith(p));
const isIoPackage = (s: string) => IO_PACKAGES.some((p) => s === p || s.startsWith(p.endsWith("/") ? p : `${p}/`));

/** What a core file imports that it must not: an I/O folder or an I/O package. */
function forbidden(file: string): string[] {
  const { relative, bare } = importsOf(file);
  return [...relative.filter(isIoFile), ...bare.filter(isIoPackage)];
}

describe("src/core is pure", () => {
  const files = tsFilesUnder("src/core");

  it("has its files and its public entry", () => {
    expect(files).toContain("src/core/mod.ts");
    expect(files).toContain("src/core/apply.ts");
  });

  it("no file under src/core imports NATS or an I/O module", () => {
    const found = files.flatMap((f) => forbidden(f).map((what) => `${f} imports ${what}`));
    expect(found).toEqual([]);
  });

  it("nothing core reaches, however indirectly, is NATS or an I/O folder", () => {
    const graph = importGraph(files);
    const io = [...graph.keys()].filter(isIoFile).map((f) => pathTo(graph, f));
    const nats = [...graph.keys()].filter((f) => importsOf(f).bare.some((s) => s.startsWith("@nats-io/"))).map((f) => pathTo(graph, f));
    expect(io).toEqual([]);
    expect(nats).toEqual([]);
    // The walk does see core's own dependencies (it is not vacuous).
    expect(graph.has("src/rules/mod.ts")).toBe(true);
  });

  it("the scanner sees every kind of import", () => {
    const src = `import { a } from "@nats-io/jetstream";\nimport type { B } from "../nats/mod.ts";\nexport { c } from "node:fs";\nconst d = await import("../pipeline/mod.ts");`;
    expect(specifiersOf(src)).toEqual(["@nats-io/jetstream", "../nats/mod.ts", "node:fs", "../pipeline/mod.ts"]);
  });
});

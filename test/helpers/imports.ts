/**
 * A static reading of the import graph, for tests that hold the layout to
 * its rules (what may import what, what a start path loads). Reads every
 * `import`, `export … from` and literal `import("…")` with TypeScript's
 * own pre-processor; a specifier that is not a literal is not seen.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** The module specifiers a source text imports (static, re-exports and literal dynamic imports). */
export function specifiersOf(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
}

/** Every `.ts` file under `dir` (relative to the root), as root-relative paths. */
export function tsFilesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith(".ts")) out.push(relative(ROOT, p));
    }
  };
  walk(join(ROOT, dir));
  return out.sort();
}

/** A file's imports: relative ones resolved to root-relative paths, bare ones (packages, `node:`) as written. */
export function importsOf(file: string): { relative: string[]; bare: string[] } {
  const specs = specifiersOf(readFileSync(join(ROOT, file), "utf8"));
  return {
    relative: specs.filter((s) => s.startsWith(".")).map((s) => relative(ROOT, resolve(ROOT, dirname(file), s))),
    bare: specs.filter((s) => !s.startsWith(".")),
  };
}

/** Every file reachable from `entries` through relative imports, with the file that first imported it. */
export function importGraph(entries: readonly string[]): Map<string, string | undefined> {
  const seen = new Map<string, string | undefined>(entries.map((e) => [e, undefined]));
  const todo = [...entries];
  for (let f = todo.pop(); f !== undefined; f = todo.pop()) {
    if (!existsSync(join(ROOT, f))) continue;
    for (const dep of importsOf(f).relative) {
      if (seen.has(dep)) continue;
      seen.set(dep, f);
      todo.push(dep);
    }
  }
  return seen;
}

/** How `file` was reached from the entries of `graph`: entry → … → file. */
export function pathTo(graph: Map<string, string | undefined>, file: string): string {
  const chain = [file];
  for (let by = graph.get(file); by !== undefined; by = graph.get(by)) chain.unshift(by);
  return chain.join(" → ");
}

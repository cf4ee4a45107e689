/**
 * The rule language: schema, compilation and the pure evaluator. Only
 * `files.ts` touches the file system; everything else is pure.
 */
export * from "./schema.ts";
export * from "./condition.ts";
export * from "./compile.ts";
export * from "./ruleset.ts";
export * from "./validate.ts";
export * from "./kinds/mod.ts";
export * from "./evaluate.ts";
export * from "./files.ts";
export * from "./bounds.ts";

/**
 * The rule language: schema, compilation and the pure evaluator. Only
 * `files.ts` touches the file system; everything else is pure.
 */
export * from "./schema.ts";
export * from "./condition.ts";
export * from "./ruleset.ts";
export * from "./evaluate.ts";
export * from "./files.ts";

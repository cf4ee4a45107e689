/** Engine configuration: one zod schema, loaded from file and environment. */
export * from "./schema.ts";
export * from "./load.ts";
export * from "../util/duration.ts";

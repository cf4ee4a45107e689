/** The event contract: schema, subjects, partitioning, decoding. */
export * from "./schema.ts";
export * from "./subjects.ts";
export * from "./decode.ts";
export * from "./limits.ts";
export * from "./fields.ts";

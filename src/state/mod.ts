/** Per-user state: its layout and its compare-and-set store. */
export * from "./user-state.ts";
export * from "./store.ts";
export * from "./seen.ts";

/** Per-user state in KV: its compare-and-set store and the seen-ids archive (the layout itself is in core/). */
export { ConflictError, CorruptStateError, StateStore, type Versioned } from "./store.ts";
export { SeenArchive } from "./seen.ts";

/** HTTP API keys: scopes, generation and hashing, the key store and its in-memory mirror. */
export { ALL_SCOPES, generateKey, grants, hashSecret, parseKey, Scopes, secretMatches, TENANT_SCOPES, type Scope } from "./keys.ts";
export { adminKeyFile, ApiKeys, checkKeySpec, KeyRequestError, type KeyView } from "./store.ts";
export { StreamTokens, type StreamGrant } from "./stream-token.ts";

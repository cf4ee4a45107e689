/** HTTP API keys: scopes, generation and hashing, the key store and its in-memory mirror. */
export { ALL_SCOPES, generateKey, grants, hashSecret, KEY_ID, keyPrefix, parseKey, Scopes, secretMatches, TENANT_SCOPES, type KeyRecord, type NewKey, type Scope } from "./keys.ts";
export { adminKeyFile, ApiKeys, checkKeySpec, KeyRequestError, keyView, type KeySpec, type KeyView } from "./store.ts";

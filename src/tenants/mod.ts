/** Tenants on NATS: the registry of tenant nkeys, their subject permissions, and the embedded server's authorization. */
export {
  AuthorizationConfigError,
  isUserPublicKey,
  renderAuthorization,
  tenantInboxPrefix,
  tenantPermissions,
} from "./authorization.ts";
export { InvalidTenantError, TenantExistsError, TenantNotFoundError, TenantRegistry, type IssuedTenant, type TenantRecord } from "./registry.ts";
export { prepareEmbeddedAuthorization, type AuthorizationSync, type EmbeddedAuthorization } from "./server-auth.ts";

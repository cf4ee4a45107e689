import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance, FastifySchema } from "fastify";
import { z } from "zod";
import { EventSchema } from "../events/mod.ts";

/** Where the browsable API reference is served (public, like `/openapi.json`). */
export const DOCS_PREFIX = "/docs";

/** The body of every 4xx/5xx answer, as JSON schema. */
export const ErrorJson = {
  type: "object",
  required: ["error", "message"],
  properties: { error: { type: "string", description: "a stable code: unauthorized, forbidden, bad_request, too_deep, …" }, message: { type: "string", description: "what was wrong and where" } },
} as const;

/** One event of the contract, as JSON schema (from the zod schema the engine validates with). */
export const EventJson = (({ $schema: _drop, ...s }) => s)(z.toJSONSchema(EventSchema, { io: "input" }) as Record<string, unknown>);

const err = (description: string) => ({ description, content: { "application/json": { schema: ErrorJson } } });

/**
 * The error answers a route can give, from what it is: a guarded route can
 * answer 401/403/429, a route with a body 400/413/415, a route with path
 * parameters 414 (a parameter over fastify's length limit), and every
 * route that reads NATS 503; 500 is an engine bug.
 */
function errorResponses(access: { public: true } | { scope: string; tenant?: "param" } | undefined, method: string, hasParams: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (access && !("public" in access)) {
    out["401"] = err("no valid API key (Authorization: Bearer <key>)");
    out["403"] = err(`the key lacks the ${access.scope} scope${access.tenant ? ", or belongs to another tenant" : ""}`);
    out["429"] = { ...err("over the per-key or per-tenant request rate (or the tenant's event quota); see Retry-After"), headers: { "retry-after": { schema: { type: "integer" } } } };
  }
  if (method === "POST" || method === "PUT") {
    out["400"] = err("the body is not JSON, nests too deep, or is not what the route takes");
    out["413"] = err("the body is over http.maxBodyBytes");
    out["415"] = err("the body is not application/json");
  }
  if (hasParams) out["414"] = err("a path parameter is too long");
  out["500"] = err("an engine failure (logged)");
  out["503"] = { ...err("NATS did not answer in time; retry shortly"), headers: { "retry-after": { schema: { type: "integer" } } } };
  return out;
}

/**
 * The OpenAPI 3.1 document, generated from the routes' own schemas
 * (`@fastify/swagger`), served at `/openapi.json`, and a browsable page at
 * {@link DOCS_PREFIX} (`@fastify/swagger-ui`, assets from npm: works
 * offline). Route schemas are documentation here: each handler validates
 * its input itself, with messages that name the field, so fastify's own
 * validation and response serialisation are switched off.
 */
export async function installDocs(app: FastifyInstance): Promise<void> {
  app.setValidatorCompiler(() => () => true);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: { title: "achd — achievement engine API", version: "1", description: "Every route but /healthz, /readyz, /openapi.json and /docs takes an API key: Authorization: Bearer <key>." },
      components: { securitySchemes: { apiKey: { type: "http", scheme: "bearer", description: "achd_<id>_<secret>" } }, schemas: { Event: EventJson, Error: ErrorJson as unknown as Record<string, unknown> } },
    },
    transform: ({ schema, url, route }) => {
      const access = route.config?.access;
      const s = (schema ?? {}) as FastifySchema & { response?: Record<string, unknown>; hide?: boolean };
      const method = String([route.method].flat()[0]);
      const response = { ...errorResponses(access, method, url.includes(":")), ...(s.response ?? {}) };
      const security = access && !("public" in access) ? [{ apiKey: [] }] : [];
      return { schema: { ...s, response, security } as FastifySchema, url };
    },
  });
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX, staticCSP: true });
}

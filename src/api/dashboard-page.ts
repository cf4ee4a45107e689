import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply } from "fastify";

/** The page's folder, next to src/ (and dist/src/): found from this file, so it works under tsx and built. */
function webDir(): string {
  for (const up of ["../../web/dashboard/", "../../../web/dashboard/"]) {
    const dir = fileURLToPath(new URL(up, import.meta.url));
    if (existsSync(join(dir, "index.html"))) return dir;
  }
  throw new Error(`the dashboard page (web/dashboard/index.html) is missing next to ${fileURLToPath(import.meta.url)}`);
}

/** Static files only, no inline script or style: what the page needs from its own origin and nothing else. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

type Asset = { type: string; body: Buffer };

/**
 * The allow-list of the page's files, read once: the page's own, and uPlot's
 * chart module and stylesheet from node_modules (served here, never from a
 * CDN: the page must work on a box without internet).
 */
function loadAssets(): { index: Asset; assets: Map<string, Asset> } {
  const dir = webDir();
  const uplot = join(dirname(createRequire(import.meta.url).resolve("uplot/package.json")), "dist");
  const js = "text/javascript; charset=utf-8";
  const css = "text/css; charset=utf-8";
  const files: [string, string, string][] = [
    ["app.js", join(dir, "app.js"), js],
    ["style.css", join(dir, "style.css"), css],
    ["uPlot.esm.js", join(uplot, "uPlot.esm.js"), js],
    ["uPlot.min.css", join(uplot, "uPlot.min.css"), css],
  ];
  const assets = new Map(files.map(([name, path, type]) => [name, { type, body: readFileSync(path) }]));
  return { index: { type: "text/html; charset=utf-8", body: readFileSync(join(dir, "index.html")) }, assets };
}

function send(reply: FastifyReply, a: Asset) {
  return reply
    .header("content-type", a.type)
    .header("cache-control", "no-cache")
    .header("content-security-policy", CSP)
    .header("x-content-type-options", "nosniff")
    .header("referrer-policy", "no-referrer")
    .send(a.body);
}

const PUBLIC = { config: { access: { public: true as const } } };
const tags = ["dashboard"];

/**
 * `GET /dashboard` and its assets. Public: the page is a shell without data;
 * it asks for an admin key and reads `GET /v1/dashboard` and `/v1/dlq` with it.
 */
export function dashboardPageRoutes(app: FastifyInstance): void {
  const { index, assets } = loadAssets();
  const page = { ...PUBLIC, schema: { summary: "The live operations dashboard (a static page; its data needs an admin key)", tags } };
  app.get("/dashboard", page, async (_req, reply) => send(reply, index));
  app.get("/dashboard/", page, async (_req, reply) => send(reply, index));
  app.get<{ Params: { file: string } }>(
    "/dashboard/assets/:file",
    { ...PUBLIC, schema: { summary: "The dashboard's scripts and stylesheets (a fixed list of files)", tags, params: { type: "object", properties: { file: { type: "string", maxLength: 64 } } } } },
    async (req, reply) => {
      // A name from the list or nothing: no path is ever built from the request.
      const a = assets.get(req.params.file);
      if (!a) return reply.code(404).send({ error: "not_found", message: `no dashboard asset ${JSON.stringify(req.params.file.slice(0, 64))}` });
      return send(reply, a);
    },
  );
}

import { createServer, type Server } from "node:http";
import type { Logger } from "../util/log.ts";
import type { EngineMetrics } from "./prometheus.ts";

/**
 * `/metrics` for a process without the HTTP API (`achd worker`), on its own
 * small listener: no keys (bind it to loopback or a private network, as
 * with node_exporter). Resolves with the URL, or undefined when the port
 * is taken: a worker without metrics still works, so that is logged, not
 * fatal.
 */
export async function serveMetrics(metrics: EngineMetrics, host: string, port: number, log: Logger): Promise<{ url: string; close(): Promise<void> } | undefined> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("only GET /metrics here\n");
      return;
    }
    metrics
      .text()
      .then(({ body, contentType }) => res.writeHead(200, { "content-type": contentType }).end(body))
      .catch((err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`metrics failed: ${(err as Error).message}\n`));
  });
  server.keepAliveTimeout = 5000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => resolve());
    });
  } catch (err) {
    log.error({ host, port, err: (err as Error).message }, "cannot serve /metrics (set metrics.port, ACH_METRICS_PORT); this process runs without it");
    return undefined;
  }
  const addr = server.address();
  const url = typeof addr === "object" && addr ? `http://${host.includes(":") ? `[${host}]` : host}:${addr.port}/metrics` : `http://${host}:${port}/metrics`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

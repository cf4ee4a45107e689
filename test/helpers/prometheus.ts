/**
 * A real Prometheus server for a test: it scrapes the given `/metrics` URLs
 * every second and answers PromQL over its HTTP API. Debian's `prometheus`
 * package (2.42) by default, `ACH_PROMETHEUS` for another binary; `.ci/run`
 * installs it (scripts/ensure-test-tool.sh).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { eventually } from "./engine.ts";
import { freePort } from "./nats.ts";

export const PROMETHEUS = process.env.ACH_PROMETHEUS ?? "/usr/bin/prometheus";
/** promtool ships beside the server. */
export const PROMTOOL = join(dirname(PROMETHEUS), "promtool");

export type Sample = { metric: Record<string, string>; value: number };

export type TestPrometheus = {
  url: string;
  /** An instant query: every series with its value now. */
  query(expr: string): Promise<Sample[]>;
  /** The targets' health as Prometheus sees it (`up`, last error). */
  targets(): Promise<{ scrapeUrl: string; health: string; lastError: string }[]>;
  stop(): Promise<void>;
};

/** Starts Prometheus scraping `targets` (each a full `/metrics` URL, with a bearer token where the endpoint needs one). */
export async function startPrometheus(targets: { url: string; bearer?: string }[]): Promise<TestPrometheus> {
  if (!existsSync(PROMETHEUS)) throw new Error(`no Prometheus at ${PROMETHEUS}: run scripts/ensure-test-tool.sh prometheus (apt-get install prometheus), or set ACH_PROMETHEUS`);
  const dir = mkdtempSync(join(tmpdir(), "achd-prometheus-"));
  const jobs = targets.map((t, i) => {
    const u = new URL(t.url);
    return [
      `  - job_name: target${i}`,
      `    scrape_interval: 1s`,
      `    scrape_timeout: 1s`,
      `    metrics_path: ${u.pathname}`,
      ...(t.bearer ? [`    authorization: { type: Bearer, credentials: ${JSON.stringify(t.bearer)} }`] : []),
      `    static_configs: [{ targets: [${JSON.stringify(u.host)}] }]`,
    ].join("\n");
  });
  writeFileSync(join(dir, "prometheus.yml"), `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n${jobs.join("\n")}\n`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc: ChildProcess = spawn(PROMETHEUS, [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"], { stdio: ["ignore", "ignore", "pipe"] });
  const log: string[] = [];
  proc.stderr?.on("data", (b: Buffer) => log.push(b.toString()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      proc.kill("SIGKILL");
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(() => fetch(`${url}/-/ready`).then((r) => (r.ok ? true : undefined), () => undefined), 30_000, `Prometheus ready (${log.join("").slice(-500)})`);
  } catch (err) {
    await stop();
    throw err;
  }
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`Prometheus ${path}: ${body.error}`);
    return body.data;
  };
  return {
    url,
    query: async (expr) => {
      const data = await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
      return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    targets: async () => {
      const data = await api<{ activeTargets: { scrapeUrl: string; health: string; lastError: string }[] }>("/api/v1/targets");
      return data.activeTargets.map(({ scrapeUrl, health, lastError }) => ({ scrapeUrl, health, lastError }));
    },
    stop,
  };
}

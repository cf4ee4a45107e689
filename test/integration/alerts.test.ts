/**
 * The example alert rules (config/prometheus/alerts.yml) are valid Prometheus
 * rules, every metric they name is one the engine exports, and their unit
 * tests (alerts.test.yml: input series, the alerts expected at given times)
 * pass under promtool.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { PROMTOOL } from "../helpers/prometheus.ts";

const dir = fileURLToPath(new URL("../../config/prometheus/", import.meta.url));
const promtool = (...args: string[]) => execFileSync(PROMTOOL, args, { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

describe("example alert rules", () => {
  it("pass promtool's check and their unit tests", () => {
    expect(promtool("check", "rules", "alerts.yml")).toMatch(/SUCCESS: 6 rules found/);
    expect(promtool("test", "rules", "alerts.test.yml")).toMatch(/SUCCESS/);
  });

  it("name only metrics the engine exports", () => {
    const rules = readFileSync(`${dir}alerts.yml`, "utf8");
    const named = new Set([...rules.matchAll(/\b(achd_[a-z_]+?)(?:_bucket)?\b/g)].map((m) => m[1]!));
    const exported = readFileSync(fileURLToPath(new URL("../../src/metrics/prometheus.ts", import.meta.url)), "utf8");
    for (const name of named) expect(exported, `${name} is exported`).toContain(`"${name}"`);
  });
});

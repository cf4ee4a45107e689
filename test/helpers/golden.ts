import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { fixture } from "./engine.ts";

/** One golden fixture: rules, events, and the unlocks they must produce. */
export type Golden = {
  name: string;
  /** Tenant the fixture runs as in the shared pipeline run. */
  tenant: string;
  dir: string;
  rules: unknown[];
  events: Record<string, unknown>[];
  expected: Record<string, unknown>[];
};

const jsonl = (path: string) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Every fixture under test/fixtures/golden, with tenant ids rewritten to `g-<name>`. */
export function goldenFixtures(): Golden[] {
  const root = fixture("golden");
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const dir = join(root, name);
      const tenant = `g-${name}`;
      const file = parseYaml(readFileSync(join(dir, "rules.yaml"), "utf8")) as { rules: unknown[] };
      return {
        name,
        tenant,
        dir,
        rules: file.rules,
        events: jsonl(join(dir, "events.jsonl")).map((e) => ({ ...e, tenant_id: tenant })),
        expected: jsonl(join(dir, "expected.jsonl")),
      };
    });
}

/** The fields of an unlock that fixtures state, in the fixtures' key order. */
export function comparable(u: Record<string, unknown>): Record<string, unknown> {
  return {
    user_id: u.user_id,
    achievement_id: u.achievement_id,
    tier: u.tier,
    rule_version: u.rule_version,
    occurrence: u.occurrence,
    ...(u.period !== undefined ? { period: u.period } : {}),
    unlocked_at: u.unlocked_at,
    trigger_event_ids: u.trigger_event_ids,
  };
}

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { RuleFileSchema, type Rule } from "./schema.ts";
import { RuleBook } from "./ruleset.ts";

/** One problem in a rules file: where (file, rule id, path) and why. */
export type RuleProblem = { file: string; rule?: string; path: string; reason: string };

/** A rule set that cannot be loaded; lists every problem found. */
export class RulesError extends Error {
  override name = "RulesError";
  constructor(readonly problems: RuleProblem[]) {
    super(
      `invalid rules:\n` +
        problems.map((p) => `  ${p.file}${p.rule ? ` rule ${p.rule}` : ""} at ${p.path || "(root)"}: ${p.reason}`).join("\n"),
    );
  }
}

const RULE_EXT = new Set([".yaml", ".yml", ".json"]);

/** The rule files under `path` (a file, or a folder searched recursively), sorted. */
export function ruleFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  const out: string[] = [];
  for (const name of readdirSync(path).sort()) {
    const full = join(path, name);
    if (statSync(full).isDirectory()) out.push(...ruleFiles(full));
    else if (RULE_EXT.has(extname(name))) out.push(full);
  }
  return out;
}

/** Validates the parsed content of one file; collects problems instead of throwing. */
export function checkRuleFile(file: string, content: unknown, problems: RuleProblem[]): { tenant: string; rules: Rule[] } | undefined {
  const body = Array.isArray(content) ? { rules: content } : content;
  const parsed = RuleFileSchema.safeParse(body);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    const [top, index, ...rest] = issue.path;
    let rule: string | undefined;
    if (top === "rules" && typeof index === "number") {
      const raw = (body as { rules?: unknown[] })?.rules?.[index] as { id?: unknown } | undefined;
      rule = typeof raw?.id === "string" ? raw.id : `#${index}`;
      problems.push({ file, rule, path: rest.join("."), reason: issue.message });
    } else {
      problems.push({ file, path: issue.path.join("."), reason: issue.message });
    }
  }
  return undefined;
}

/**
 * Loads and validates every rules file under `path` into a {@link RuleBook}.
 * Throws {@link RulesError} listing every problem (file, rule id, path, reason).
 */
export function loadRules(path: string): RuleBook {
  if (!existsSync(path)) throw new RulesError([{ file: path, path: "", reason: "no such file or folder (set rules in the config, or ACH_RULES)" }]);
  const problems: RuleProblem[] = [];
  const defaults: Rule[] = [];
  const tenants = new Map<string, Rule[]>();
  const seen = new Map<string, string>();
  for (const file of ruleFiles(path)) {
    let content: unknown;
    try {
      const text = readFileSync(file, "utf8");
      content = extname(file) === ".json" ? JSON.parse(text) : parseYaml(text);
    } catch (err) {
      problems.push({ file, path: "", reason: `cannot parse: ${(err as Error).message}` });
      continue;
    }
    const f = checkRuleFile(file, content, problems);
    if (!f) continue;
    for (const rule of f.rules) {
      const key = `${f.tenant}/${rule.id}`;
      const first = seen.get(key);
      if (first) {
        problems.push({ file, rule: rule.id, path: "id", reason: `duplicate rule id for tenant ${f.tenant} (first defined in ${first})` });
        continue;
      }
      seen.set(key, file);
      if (f.tenant === "*") defaults.push(rule);
      else tenants.set(f.tenant, [...(tenants.get(f.tenant) ?? []), rule]);
    }
  }
  if (problems.length) throw new RulesError(problems);
  return new RuleBook(defaults, tenants);
}

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { RuleFileSchema, type Rule } from "./schema.ts";
import { RuleBook } from "./ruleset.ts";
import { checkRuleBook } from "./validate.ts";

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

/** The rules read from files, with the file each came from. */
export type FileRule = { tenant: string; rule: Rule; file: string };

/**
 * Reads and validates every rules file under `path` (schema only). Returns
 * the rules with their files; throws {@link RulesError} listing every
 * problem (file, rule id, path, reason).
 */
export function readRuleFiles(path: string): FileRule[] {
  if (!existsSync(path)) throw new RulesError([{ file: path, path: "", reason: "no such file or folder (set rules in the config, or ACH_RULES)" }]);
  const problems: RuleProblem[] = [];
  const out: FileRule[] = [];
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
      const key = `${f.tenant}/${rule.id}/${rule.version ?? "?"}`;
      const first = seen.get(key);
      if (first) {
        const what = rule.version === undefined ? "rule id (give each version of a rule an explicit version)" : `version ${rule.version} of this rule`;
        problems.push({ file, rule: rule.id, path: rule.version === undefined ? "id" : "version", reason: `duplicate ${what} for tenant ${f.tenant} (first defined in ${first})` });
        continue;
      }
      seen.set(key, file);
      out.push({ tenant: f.tenant, rule, file });
    }
  }
  // A rule listed in several versions must number them all.
  const ids = new Map<string, FileRule[]>();
  for (const r of out) ids.set(`${r.tenant}/${r.rule.id}`, [...(ids.get(`${r.tenant}/${r.rule.id}`) ?? []), r]);
  for (const list of ids.values()) {
    if (list.length > 1 && list.some((r) => r.rule.version === undefined)) {
      const r = list.find((x) => x.rule.version === undefined)!;
      problems.push({ file: r.file, rule: r.rule.id, path: "version", reason: "this rule is listed more than once: give every listed version an explicit version" });
    }
  }
  if (problems.length) throw new RulesError(problems);
  return out;
}

/** A {@link RuleBook} from file rules: versions as written, effective from their effective_from or the start. */
export function bookFromFileRules(rules: readonly FileRule[]): RuleBook {
  const shared = rules.filter((r) => r.tenant === "*").map((r) => r.rule);
  const tenants = new Map<string, Rule[]>();
  for (const r of rules) if (r.tenant !== "*") tenants.set(r.tenant, [...(tenants.get(r.tenant) ?? []), r.rule]);
  return RuleBook.fromRules(shared, tenants);
}

/** Turns cross-rule issues of a book into file problems, naming the file that defines each rule. */
export function crossProblems(book: RuleBook, rules: readonly FileRule[]): RuleProblem[] {
  const seen = new Set<string>();
  const out: RuleProblem[] = [];
  for (const i of checkRuleBook(book)) {
    const file = rules.find((r) => r.rule.id === i.rule && r.tenant === i.tenant)?.file ?? rules.find((r) => r.rule.id === i.rule && r.tenant === "*")?.file ?? `(tenant ${i.tenant})`;
    const key = `${file}|${i.rule}|${i.path}|${i.reason}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ file, rule: i.rule, path: i.path, reason: i.reason });
  }
  return out;
}

/**
 * Loads and validates every rules file under `path` into a {@link RuleBook}:
 * the schema of each rule and the references between rules, for every
 * tenant. Throws {@link RulesError} listing every problem.
 */
export function loadRules(path: string): RuleBook {
  return checkedRuleFiles(path).book;
}

/**
 * Reads and validates every rules file under `path`, the references between
 * rules included; returns the rules with their files and their book, or
 * throws {@link RulesError} listing every problem.
 */
export function checkedRuleFiles(path: string): { files: FileRule[]; book: RuleBook } {
  const files = readRuleFiles(path);
  const book = bookFromFileRules(files);
  const problems = crossProblems(book, files);
  if (problems.length) throw new RulesError(problems);
  return { files, book };
}

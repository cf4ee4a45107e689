/**
 * Which rule version a history run works on: a stored one (`id@version`,
 * or the latest), or a candidate that is not stored yet. The CLI and the
 * API both ask here, over the rule book the workers run.
 */
import type { Rule, RuleBook, RuleVersion } from "../rules/mod.ts";

const scopeName = (scope: string) => (scope === "*" ? "the shared rules" : `tenant ${scope}'s rules`);

/**
 * The stored version of rule `id` a run applies: `version` in the first of
 * `scopes` that holds it, or (no version) the latest version in the first
 * of `scopes` that has the rule, refused when it retires the rule. A string says why there is none, and
 * what is stored instead.
 */
export function storedVersion(book: RuleBook, scopes: readonly string[], id: string, version?: number): { scope: string; version: RuleVersion } | string {
  const all = book.all().filter((x) => x.version.rule.id === id);
  const of = (scope: string) => all.filter((x) => x.tenant === scope).map((x) => x.version).sort((a, b) => a.version - b.version);
  for (const scope of scopes) {
    const mine = of(scope);
    if (version !== undefined) {
      const found = mine.find((v) => v.version === version);
      if (found) return { scope, version: found };
    } else if (mine.length) {
      // The latest version, unless it retires the rule: an older enabled one would bring a retired achievement back.
      const latest = mine.at(-1)!;
      return latest.rule.enabled ? { scope, version: latest } : `${id} is retired in ${scopeName(scope)} (version ${latest.version} disables it; stored: ${mine.map((v) => v.version).join(", ")}); name a version as ${id}@version`;
    }
  }
  const where = scopes.map(scopeName).join(" or ");
  const here = scopes.flatMap((s) => of(s).map((v) => `${s === "*" ? "" : `${s}/`}${id}@${v.version}`));
  const elsewhere = [...new Set(all.filter((x) => !scopes.includes(x.tenant)).map((x) => (x.tenant === "*" ? "the shared rules" : `tenant ${x.tenant}`)))];
  const hint = here.length ? `; stored: ${here.join(", ")}` : elsewhere.length ? `; it is stored in ${elsewhere.join(", ")}${scopes.includes("*") && scopes.length === 1 ? " (give --tenant)" : ""}` : "; no version of it is stored";
  return `${version === undefined ? id : `${id}@${version}`} is not stored in ${where}${hint}`;
}

/** A candidate version of `rule` in `scope`: its own version number, or the next after the latest stored in that scope. */
export function candidateVersion(book: RuleBook, scope: string, rule: Rule, source: "file" | "api"): RuleVersion {
  const latest = book
    .all()
    .filter((x) => x.tenant === scope && x.version.rule.id === rule.id)
    .reduce((n, x) => Math.max(n, x.version.version), 0);
  const version = rule.version ?? latest + 1;
  // In force over all of history: withVersion makes it so whatever this says.
  return { rule: { ...rule, version }, version, effectiveFrom: Number.NEGATIVE_INFINITY, source };
}

/**
 * The tenants a version in `scope` applies to: that tenant, or (the shared
 * rules) every tenant but those with a version of their own of the rule.
 */
export function appliesTo(book: RuleBook, scope: string, id: string): (tenant: string) => boolean {
  if (scope !== "*") return (tenant) => tenant === scope;
  const own = new Set(book.all().filter((x) => x.tenant !== "*" && x.version.rule.id === id).map((x) => x.tenant));
  return (tenant) => !own.has(tenant);
}

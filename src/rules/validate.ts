import { itemAchievement } from "./compile.ts";
import { activeAt, type RuleBook, type RuleVersion } from "./ruleset.ts";
import type { Rule } from "./schema.ts";

/** A problem that involves several rules: which rule, where in it, and why. */
export type RuleIssue = { rule: string; path: string; reason: string };

/** The achievement references of a rule, with where each one is written. */
function refsOf(r: Rule): { ref: string; path: string }[] {
  const out = r.prerequisites.map((ref, i) => ({ ref, path: `prerequisites.${i}` }));
  if (r.type === "composite") {
    r.of.forEach((item, i) => {
      const ref = itemAchievement(item);
      if (ref) out.push({ ref, path: `of.${i}` });
    });
  }
  return out;
}

/**
 * Checks a set of rules that are in force together: every prerequisite and
 * composite item names an existing achievement (and tier), none is
 * repeatable, and no rule depends on itself through others.
 */
export function checkRuleSet(rules: readonly Rule[]): RuleIssue[] {
  const issues: RuleIssue[] = [];
  const byId = new Map(rules.map((r) => [r.id, r]));
  for (const r of rules) {
    for (const { ref, path } of refsOf(r)) {
      const [id, tier] = ref.split(":") as [string, string | undefined];
      const target = byId.get(id);
      if (!target) {
        issues.push({ rule: r.id, path, reason: `unknown achievement ${id}` });
        continue;
      }
      if (id === r.id) issues.push({ rule: r.id, path, reason: "a rule cannot depend on itself" });
      const tiers = "tiers" in target && target.tiers ? target.tiers.map((t) => t.name) : [];
      if (tier !== undefined && !tiers.includes(tier)) {
        issues.push({ rule: r.id, path, reason: tiers.length ? `achievement ${id} has no tier ${tier} (it has ${tiers.join(", ")})` : `achievement ${id} has no tiers` });
      }
      if (tier === undefined && tiers.length) issues.push({ rule: r.id, path, reason: `achievement ${id} has tiers: name one, e.g. ${id}:${tiers[0]}` });
      if (target.repeatable) issues.push({ rule: r.id, path, reason: `achievement ${id} is repeatable and cannot be depended on` });
    }
  }
  // Cycles through prerequisites and composite items.
  const state = new Map<string, "visiting" | "done">();
  const visit = (id: string, trail: string[]): void => {
    if (state.get(id) === "done") return;
    if (state.get(id) === "visiting") {
      const cycle = [...trail.slice(trail.indexOf(id)), id];
      issues.push({ rule: id, path: "prerequisites", reason: `dependency cycle: ${cycle.join(" → ")}` });
      return;
    }
    state.set(id, "visiting");
    const r = byId.get(id);
    for (const { ref } of r ? refsOf(r) : []) {
      const dep = ref.split(":")[0]!;
      if (byId.has(dep) && dep !== id) visit(dep, [...trail, id]);
    }
    state.set(id, "done");
  };
  for (const r of rules) visit(r.id, []);
  return issues;
}

/** The distinct sets of versions in force over time for the shared rules and each tenant. */
function setsOverTime(shared: readonly RuleVersion[], own: readonly RuleVersion[]): Rule[][] {
  const edges = [Number.NEGATIVE_INFINITY, ...new Set([...shared, ...own].map((v) => v.effectiveFrom).filter(Number.isFinite))];
  return edges.map((t) => {
    const ownNow = own.filter((v) => v.effectiveFrom <= t);
    const ownIds = new Set(ownNow.map((v) => v.rule.id));
    return [...activeAt(shared, t).filter((v) => !ownIds.has(v.rule.id)), ...activeAt(own, t)].map((v) => v.rule);
  });
}

/** Cross-rule checks of a whole book, for every tenant and every moment a version changes. */
export function checkRuleBook(book: RuleBook): (RuleIssue & { tenant: string })[] {
  const all = book.all();
  const shared = all.filter((a) => a.tenant === "*").map((a) => a.version);
  const seen = new Set<string>();
  const out: (RuleIssue & { tenant: string })[] = [];
  for (const tenant of ["*", ...book.tenants()]) {
    const own = tenant === "*" ? [] : all.filter((a) => a.tenant === tenant).map((a) => a.version);
    for (const set of setsOverTime(shared, own)) {
      for (const issue of checkRuleSet(set)) {
        const key = `${tenant}|${issue.rule}|${issue.path}|${issue.reason}`;
        if (seen.has(key)) continue;
        seen.add(key);
        out.push({ tenant, ...issue });
      }
    }
  }
  return out;
}

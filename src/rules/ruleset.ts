import { compileCondition, type Predicate } from "./condition.ts";
import type { Rule } from "./schema.ts";

/** A rule ready to evaluate: its definition plus a compiled filter. */
export type CompiledRule = { rule: Rule; matches: Predicate };

/** The rules that apply to one tenant, indexed by event type. */
export type RuleSet = {
  readonly rules: readonly CompiledRule[];
  readonly byEventType: ReadonlyMap<string, readonly CompiledRule[]>;
  readonly byId: ReadonlyMap<string, CompiledRule>;
};

const always: Predicate = () => true;

/** Compiles validated rules into a {@link RuleSet}. */
export function compileRuleSet(rules: readonly Rule[]): RuleSet {
  const compiled = rules.map((rule) => ({ rule, matches: rule.where ? compileCondition(rule.where) : always }));
  const byEventType = new Map<string, CompiledRule[]>();
  for (const c of compiled) {
    for (const t of c.rule.event) {
      const list = byEventType.get(t) ?? [];
      list.push(c);
      byEventType.set(t, list);
    }
  }
  return { rules: compiled, byEventType, byId: new Map(compiled.map((c) => [c.rule.id, c])) };
}

/**
 * All rule sets of a deployment: a shared default set plus per-tenant sets.
 * A tenant's rule replaces a default rule with the same id.
 */
export class RuleBook {
  readonly #defaults: readonly Rule[];
  readonly #tenants: ReadonlyMap<string, readonly Rule[]>;
  readonly #cache = new Map<string, RuleSet>();

  constructor(defaults: readonly Rule[], tenants: ReadonlyMap<string, readonly Rule[]> = new Map()) {
    this.#defaults = defaults;
    this.#tenants = tenants;
  }

  /** The compiled rule set for `tenant` (compiled once, then cached). */
  forTenant(tenant: string): RuleSet {
    let set = this.#cache.get(tenant);
    if (!set) {
      const own = this.#tenants.get(tenant) ?? [];
      const ids = new Set(own.map((r) => r.id));
      set = compileRuleSet([...this.#defaults.filter((r) => !ids.has(r.id)), ...own]);
      this.#cache.set(tenant, set);
    }
    return set;
  }

  /** Every rule, for listing and validation. */
  all(): { tenant: string; rule: Rule }[] {
    const out = this.#defaults.map((rule) => ({ tenant: "*", rule }));
    for (const [tenant, rules] of this.#tenants) out.push(...rules.map((rule) => ({ tenant, rule })));
    return out;
  }
}

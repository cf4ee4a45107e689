import { compileRule, type CompiledRule } from "./compile.ts";
import type { Rule } from "./schema.ts";

/** The rules in force for one tenant at one moment, indexed for the evaluator. */
export type RuleSet = {
  readonly rules: readonly CompiledRule[];
  readonly byEventType: ReadonlyMap<string, readonly CompiledRule[]>;
  readonly byId: ReadonlyMap<string, CompiledRule>;
  /** Rules that wait on other achievements (prerequisites, composites), dependencies first. */
  readonly dependents: readonly CompiledRule[];
  /** Event types that some order-sensitive rule listens to. */
  readonly orderedTypes: ReadonlySet<string>;
};

/** Anything that can say which rule set applies at an event time. */
export type RuleSource = { at(time: number): RuleSet };

/** A rule with its version number and the event time from which it applies. */
export type RuleVersion = {
  rule: Rule;
  version: number;
  /** Epoch ms; -Infinity for "from the beginning". */
  effectiveFrom: number;
  source?: "file" | "api";
  createdAt?: string;
};

/** Orders rules so that every rule comes after the achievements it depends on (cycles are refused by validation). */
function dependencyOrder(rules: readonly CompiledRule[]): CompiledRule[] {
  const byId = new Map(rules.map((r) => [r.id, r]));
  const out: CompiledRule[] = [];
  const seen = new Set<string>();
  const visit = (r: CompiledRule, stack: Set<string>) => {
    if (seen.has(r.id) || stack.has(r.id)) return;
    stack.add(r.id);
    for (const d of r.deps) {
      const dep = byId.get(d.split(":")[0]!);
      if (dep) visit(dep, stack);
    }
    stack.delete(r.id);
    seen.add(r.id);
    out.push(r);
  };
  for (const r of rules) visit(r, new Set());
  return out.filter((r) => r.deps.length > 0);
}

/** Compiles rule versions (at most one per id) into a {@link RuleSet}, which is also a {@link RuleSource} for itself. */
export function compileRuleSet(rules: readonly (Rule | RuleVersion)[]): RuleSet & RuleSource {
  const compiled = rules.map((r) => ("rule" in r ? compileRule(r.rule, r.version, r.effectiveFrom) : compileRule(r, r.version ?? 1, r.effective_from)));
  const byEventType = new Map<string, CompiledRule[]>();
  for (const c of compiled) {
    for (const t of c.types) {
      const list = byEventType.get(t) ?? [];
      list.push(c);
      byEventType.set(t, list);
    }
  }
  const set: RuleSet & RuleSource = {
    rules: compiled,
    byEventType,
    byId: new Map(compiled.map((c) => [c.id, c])),
    dependents: dependencyOrder(compiled),
    orderedTypes: new Set(compiled.filter((c) => c.ordered).flatMap((c) => c.types)),
    at: () => set,
  };
  return set;
}

/** The version of each rule id active at `time` (a disabled version retires the rule). */
export function activeAt(versions: readonly RuleVersion[], time: number): RuleVersion[] {
  const best = new Map<string, RuleVersion>();
  for (const v of versions) {
    if (v.effectiveFrom > time) continue;
    const cur = best.get(v.rule.id);
    if (!cur || v.effectiveFrom > cur.effectiveFrom || (v.effectiveFrom === cur.effectiveFrom && v.version > cur.version)) best.set(v.rule.id, v);
  }
  return [...best.values()].filter((v) => v.rule.enabled);
}

/**
 * One tenant's rules over time: the shared versions overlaid by the
 * tenant's own (a tenant version replaces the shared rule with the same id
 * from its effective time on). Rule sets are compiled once per span of time
 * between two version changes.
 */
export class TenantRules implements RuleSource {
  readonly #shared: readonly RuleVersion[];
  readonly #own: readonly RuleVersion[];
  readonly #edges: number[];
  readonly #sets = new Map<number, RuleSet & RuleSource>();

  constructor(shared: readonly RuleVersion[], own: readonly RuleVersion[]) {
    this.#shared = shared;
    this.#own = own;
    this.#edges = [...new Set([...shared, ...own].map((v) => v.effectiveFrom).filter(Number.isFinite))].sort((a, b) => a - b);
  }

  /** The versions in force at `time`. */
  versionsAt(time: number): RuleVersion[] {
    const own = activeAt(this.#own, time);
    const ownIds = new Set(this.#own.filter((v) => v.effectiveFrom <= time).map((v) => v.rule.id));
    return [...activeAt(this.#shared, time).filter((v) => !ownIds.has(v.rule.id)), ...own];
  }

  at(time: number): RuleSet & RuleSource {
    // Index of the span: how many edges are at or before `time`.
    let lo = 0;
    let hi = this.#edges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#edges[mid]! <= time) lo = mid + 1;
      else hi = mid;
    }
    let set = this.#sets.get(lo);
    if (!set) {
      const from = lo === 0 ? Number.NEGATIVE_INFINITY : this.#edges[lo - 1]!;
      set = compileRuleSet(this.versionsAt(from));
      this.#sets.set(lo, set);
    }
    return set;
  }

  /** Every version that applies to this tenant (shared and own). */
  history(): { scope: "shared" | "tenant"; version: RuleVersion }[] {
    return [...this.#shared.map((v) => ({ scope: "shared" as const, version: v })), ...this.#own.map((v) => ({ scope: "tenant" as const, version: v }))];
  }
}

/** All rule versions of a deployment: the shared set (`*`) and per-tenant sets. */
export class RuleBook {
  readonly #shared: readonly RuleVersion[];
  readonly #tenants: ReadonlyMap<string, readonly RuleVersion[]>;
  readonly #cache = new Map<string, TenantRules>();

  constructor(shared: readonly RuleVersion[], tenants: ReadonlyMap<string, readonly RuleVersion[]> = new Map()) {
    this.#shared = shared;
    this.#tenants = tenants;
  }

  /** Builds a book from plain rules (version from the rule or 1, effective from the start or its effective_from). */
  static fromRules(shared: readonly Rule[], tenants: ReadonlyMap<string, readonly Rule[]> = new Map()): RuleBook {
    const v = (r: Rule): RuleVersion => ({ rule: r, version: r.version ?? 1, effectiveFrom: r.effective_from ?? Number.NEGATIVE_INFINITY });
    return new RuleBook(shared.map(v), new Map([...tenants].map(([t, rs]) => [t, rs.map(v)])));
  }

  /** The rules of `tenant` over time (cached). */
  forTenant(tenant: string): TenantRules {
    let t = this.#cache.get(tenant);
    if (!t) {
      t = new TenantRules(this.#shared, this.#tenants.get(tenant) ?? []);
      this.#cache.set(tenant, t);
    }
    return t;
  }

  /** Every version, by scope (`*` for the shared set). */
  all(): { tenant: string; version: RuleVersion }[] {
    const out = this.#shared.map((version) => ({ tenant: "*", version }));
    for (const [tenant, vs] of this.#tenants) out.push(...vs.map((version) => ({ tenant, version })));
    return out;
  }

  /** Tenants with rules of their own. */
  tenants(): string[] {
    return [...this.#tenants.keys()];
  }
}

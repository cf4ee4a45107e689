import type { KV } from "@nats-io/kv";
import { RuleBook, RuleSchema, RulesError, StoredRuleSchema, checkRuleBook, type FileRule, type Rule, type RuleProblem, type RuleVersion } from "../rules/mod.ts";
import { zodIssues } from "../events/mod.ts";
import { currentEntries, isCasFailure, watchChanges } from "../nats/mod.ts";

/** Scope token of the shared rule set in keys (tenant ids never start with `_`). */
export const SHARED_SCOPE = "_shared";

/** What the bucket stores per version (key `<scope>.<rule id>.<version>`). */
type StoredVersion = { rule: Rule; version: number; effective_from: number | null; created_at: string; source: "file" | "api" };

const enc = new TextEncoder();
const dec = new TextDecoder();

function scopeOf(tenant: string): string {
  return tenant === "*" ? SHARED_SCOPE : tenant;
}

function tenantOf(scope: string): string {
  return scope === SHARED_SCOPE ? "*" : scope;
}

/** A rule's content as canonical JSON, without the fields that only say which version it is. */
function deepContent(r: Rule): string {
  const { version: _v, effective_from: _e, ...rest } = r;
  return canonical(rest);
}

/** JSON with sorted keys and no undefined fields, for comparing contents. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** One rule from a request (validated alone); throws {@link RulesError} naming every problem, `where` saying whose rule it is. */
export function parseRule(input: unknown, where: string): Rule {
  const parsed = RuleSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const id = (input as { id?: unknown } | null)?.id;
  throw new RulesError(zodIssues(parsed.error).map((i) => ({ file: where, ...(typeof id === "string" ? { rule: id } : {}), path: i.path === "(root)" ? "" : i.path, reason: i.message })));
}

/** A stored version, as the registry lists it. */
export type VersionEntry = RuleVersion & { tenant: string };

/**
 * Versioned rule sets in a KV bucket: every version of every rule is its
 * own create-only key, so the history is the bucket's content and two
 * writers can never both create the same version. Rule files are synced
 * into it at start-up; the API adds versions; workers watch it.
 */
export class RuleRegistry {
  constructor(private readonly kv: KV) {}

  /** Every stored version. */
  async versions(): Promise<VersionEntry[]> {
    const out: VersionEntry[] = [];
    for (const e of await currentEntries(this.kv, ">")) {
      const key = e.key;
      const s = JSON.parse(dec.decode(e.value)) as StoredVersion;
      const rule = StoredRuleSchema.parse(s.rule);
      out.push({
        tenant: tenantOf(key.split(".")[0]!),
        rule: { ...rule, version: s.version },
        version: s.version,
        effectiveFrom: s.effective_from ?? Number.NEGATIVE_INFINITY,
        source: s.source,
        createdAt: s.created_at,
      });
    }
    return out;
  }

  /** The rule book of every stored version. */
  async book(): Promise<RuleBook> {
    return bookOf(await this.versions());
  }

  /**
   * Brings the bucket in line with the rule files: a rule whose content
   * changed since its last file version gets a new version (effective now,
   * or from its `effective_from`); a rule the files no longer have is
   * retired, when its latest version came from a file. Versions created
   * through the API are left alone. The result is validated as a whole
   * before anything is written.
   */
  async syncFiles(files: readonly FileRule[], now: number): Promise<{ created: string[]; retired: string[] }> {
    const stored = await this.versions();
    const planned: VersionEntry[] = [];
    const problems: RuleProblem[] = [];
    const all = () => [...stored, ...planned];
    // Lower explicit versions first, whatever order the files list them in.
    const ordered = [...files].sort((a, b) => (a.rule.version ?? Number.MAX_SAFE_INTEGER) - (b.rule.version ?? Number.MAX_SAFE_INTEGER));
    for (const f of ordered) {
      const mine = all().filter((v) => v.tenant === f.tenant && v.rule.id === f.rule.id);
      const latest = mine.reduce<VersionEntry | undefined>((a, v) => (!a || v.version > a.version ? v : a), undefined);
      if (f.rule.version !== undefined) {
        const same = mine.find((v) => v.version === f.rule.version);
        if (same) {
          if (deepContent(same.rule) !== deepContent(f.rule)) {
            problems.push({ file: f.file, rule: f.rule.id, path: "version", reason: `rule changed but version ${f.rule.version} is already stored with other content; raise the version (or remove it to let the engine number versions)` });
          } else if (f.rule.effective_from !== undefined && f.rule.effective_from !== same.effectiveFrom) {
            problems.push({ file: f.file, rule: f.rule.id, path: "effective_from", reason: `version ${f.rule.version} is stored with another effective_from; stored versions do not change: add a new version` });
          }
          continue;
        }
        if (latest && f.rule.version < latest.version) {
          problems.push({ file: f.file, rule: f.rule.id, path: "version", reason: `version ${f.rule.version} is older than the stored version ${latest.version}` });
          continue;
        }
      } else {
        const lastFile = mine.filter((v) => v.source === "file").reduce<VersionEntry | undefined>((a, v) => (!a || v.version > a.version ? v : a), undefined);
        if (lastFile && deepContent(lastFile.rule) === deepContent(f.rule)) continue;
      }
      const version = f.rule.version ?? (latest ? latest.version + 1 : 1);
      const effectiveFrom = f.rule.effective_from ?? (latest ? now : Number.NEGATIVE_INFINITY);
      planned.push({ tenant: f.tenant, rule: { ...f.rule, version }, version, effectiveFrom, source: "file", createdAt: new Date(now).toISOString() });
    }
    // Retire file rules that the files no longer list.
    const listed = new Set(files.map((f) => `${f.tenant}/${f.rule.id}`));
    const retiring: VersionEntry[] = [];
    for (const [key, latest] of latestById(all())) {
      if (listed.has(key) || latest.source !== "file" || !latest.rule.enabled) continue;
      const version = latest.version + 1;
      retiring.push({ ...latest, rule: { ...latest.rule, enabled: false, version }, version, effectiveFrom: now, createdAt: new Date(now).toISOString() });
    }
    planned.push(...retiring);
    if (problems.length) throw new RulesError(problems);
    const book = bookOf(all());
    const cross = unique(checkRuleBook(book).map((i) => ({ file: files.find((f) => f.rule.id === i.rule)?.file ?? `(tenant ${i.tenant})`, rule: i.rule, path: i.path, reason: i.reason })));
    if (cross.length) throw new RulesError(cross);
    for (const v of planned) {
      try {
        await this.#write(v);
      } catch (err) {
        // Another process synced the same files first; what it wrote is what we planned.
        if (!isCasFailure(err)) throw err;
      }
    }
    return {
      created: planned.filter((v) => v.rule.enabled).map((v) => `${v.tenant}/${v.rule.id}@${v.version}`),
      retired: retiring.map((v) => `${v.tenant}/${v.rule.id}@${v.version}`),
    };
  }

  /**
   * Adds a version of one rule from the API: validates it alone and then
   * with the rest of the tenant's rules; throws {@link RulesError} listing
   * every problem. Effective from `effective_from`, or now (from the start
   * for a rule's first version).
   */
  async put(tenant: string, input: unknown, now: number): Promise<VersionEntry> {
    const where = `(api ${tenant === "*" ? "shared rules" : `tenant ${tenant}`})`;
    const rule = parseRule(input, where);
    for (let attempt = 0; ; attempt++) {
      const stored = await this.versions();
      const mine = stored.filter((v) => v.tenant === tenant && v.rule.id === rule.id);
      const latest = mine.reduce<VersionEntry | undefined>((a, v) => (!a || v.version > a.version ? v : a), undefined);
      const version = rule.version ?? (latest ? latest.version + 1 : 1);
      if (latest && version <= latest.version) {
        throw new RulesError([{ file: where, rule: rule.id, path: "version", reason: `version ${version} is not above the stored version ${latest.version}` }]);
      }
      const entry: VersionEntry = {
        tenant,
        rule: { ...rule, version },
        version,
        effectiveFrom: rule.effective_from ?? (latest ? now : Number.NEGATIVE_INFINITY),
        source: "api",
        createdAt: new Date(now).toISOString(),
      };
      const cross = checkRuleBook(bookOf([...stored, entry])).filter((i) => i.tenant === tenant || tenant === "*");
      if (cross.length) throw new RulesError(unique(cross.map((i) => ({ file: where, rule: i.rule, path: i.path, reason: i.reason }))));
      try {
        await this.#write(entry);
        return entry;
      } catch (err) {
        if (!isCasFailure(err) || attempt > 3) throw err;
      }
    }
  }

  /** Retires a rule from now on (a disabled version). */
  async retire(tenant: string, id: string, now: number): Promise<VersionEntry | undefined> {
    const latest = latestById((await this.versions()).filter((v) => v.tenant === tenant)).get(`${tenant}/${id}`);
    if (!latest) return undefined;
    const { version: _v, effective_from: _e, ...rest } = latest.rule;
    return this.put(tenant, { ...rest, enabled: false }, now);
  }

  /** Calls `onChange` whenever a version is added, until the returned function is called; a failed watch goes to `onError`. */
  async watch(onChange: () => void, onError: (err: unknown) => void): Promise<() => void> {
    return watchChanges(this.kv, onChange, onError);
  }

  async #write(v: VersionEntry): Promise<void> {
    const stored: StoredVersion = {
      rule: v.rule,
      version: v.version,
      effective_from: Number.isFinite(v.effectiveFrom) ? v.effectiveFrom : null,
      created_at: v.createdAt ?? new Date(0).toISOString(),
      source: v.source ?? "api",
    };
    await this.kv.create(`${scopeOf(v.tenant)}.${v.rule.id}.${v.version}`, enc.encode(JSON.stringify(stored)));
  }
}

function unique(problems: RuleProblem[]): RuleProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.file}|${p.rule}|${p.path}|${p.reason}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function latestById(versions: readonly VersionEntry[]): Map<string, VersionEntry> {
  const m = new Map<string, VersionEntry>();
  for (const v of versions) {
    const key = `${v.tenant}/${v.rule.id}`;
    const cur = m.get(key);
    if (!cur || v.version > cur.version) m.set(key, v);
  }
  return m;
}

/** A rule book from stored versions. */
export function bookOf(versions: readonly VersionEntry[]): RuleBook {
  const shared = versions.filter((v) => v.tenant === "*");
  const tenants = new Map<string, RuleVersion[]>();
  for (const v of versions) if (v.tenant !== "*") tenants.set(v.tenant, [...(tenants.get(v.tenant) ?? []), v]);
  return new RuleBook(shared, tenants);
}

/**
 * `achd rules shadow <file|rule-id@version>` — a candidate version of a rule
 * evaluated over the stored history beside the versions the workers run
 * (the registry's), writing nothing but its report: who would gain, lose
 * or move an unlock. Ctrl-C stops it and reports what was read.
 */
import { existsSync } from "node:fs";
import { candidateVersion, shadowMarkdown, shadowRun, storedVersion, type ShadowReport } from "../src/history/mod.ts";
import { evalOptionsOf } from "../src/replay/mod.ts";
import { readRuleFiles, type RuleVersion } from "../src/rules/mod.ts";
import { parseCommand, PROGRESS_OPTIONS, UsageError, type ExitCode } from "./cli.ts";
import { cancelOnInterrupt, exportFileArg, idArg, ruleRefArg, withHistory } from "./history-common.ts";
import { progressUnless } from "./progress.ts";

const SHADOW_USAGE = `usage: achd rules shadow <file|rule-id@version> [--rule ID] [--tenant T] [--json] [--samples N] [--from-file F] [--threads N] [--no-progress]
  evaluate a candidate version of a rule over the stored events beside the versions in force
  (the registry's, as the workers run them); writes nothing but the report (bucket ach_history).
  Prints who would gain, lose or move an unlock, per achievement and tier (markdown)
  <file>             a rules file holding the candidate (its tenant, or "*" for the shared rules,
                     is where the candidate joins); without a version it is the next one
  rule-id@version    a version stored in the registry, of --tenant's rules (default: the shared rules)
  --rule ID          the rule to try when the file holds several
  --tenant T         only T's events; with rule-id@version, T's version of the rule
  --json             the report as JSON instead of markdown
  --samples N        users listed per achievement, tier and change, 0 … 1000 (default 10)
  --from-file F      read a history export (achd history export) first, then the stream after it
  --threads N        evaluating threads, 1 … 64 (default: the cores but one, at most 4)
  --no-progress      no progress on stderr
Ctrl-C stops the run: the partial report is printed and saved (status cancelled), exit 130.`;

const NAME = "achd rules shadow";

/** Runs `achd rules shadow …`; returns the exit code. */
export async function shadowCmd(args: string[]): Promise<ExitCode> {
  const a = parseCommand(
    {
      name: NAME,
      usage: SHADOW_USAGE,
      options: { rule: { type: "string" }, tenant: { type: "string" }, json: { type: "boolean" }, samples: { type: "integer", min: 0, max: 1000 }, "from-file": { type: "string" }, threads: { type: "integer", min: 1, max: 64 }, ...PROGRESS_OPTIONS },
      positionals: { min: 1, max: 1 },
    },
    args,
  );
  if (!a) return 0;
  const { rule, json, samples, threads, "no-progress": quiet } = a.values;
  const tenant = a.values.tenant === undefined ? undefined : idArg(NAME, "--tenant", a.values.tenant);
  const file = exportFileArg(NAME, a.values["from-file"]);
  const target = a.positionals[0]!;
  const fromFile = existsSync(target);
  if (!fromFile && rule !== undefined) throw new UsageError(`${NAME}: --rule picks a rule in a rules file, and ${JSON.stringify(target)} is not a file\n${SHADOW_USAGE}`);
  // A file is read before connecting: a bad file is told at once.
  const candidate = fromFile ? fileCandidate(target, rule, tenant) : undefined;
  const ref = fromFile ? undefined : ruleRefArg(NAME, target, true);

  return withHistory<ExitCode>("achd-rules-shadow", async (h) => {
    const book = await h.book();
    let scope: string;
    let version: RuleVersion;
    if (candidate) {
      scope = candidate.scope;
      version = candidateVersion(book, scope, candidate.rule.rule, "file");
    } else {
      const found = storedVersion(book, [tenant ?? "*"], ref!.id, ref!.version);
      if (typeof found === "string") {
        console.error(`${NAME}: ${found}`);
        return 1;
      }
      ({ scope, version } = found);
    }
    const progress = progressUnless(quiet, { label: "shadow", unit: "events" });
    const cancel = cancelOnInterrupt(NAME, "reporting the events read so far");
    let report: ShadowReport;
    try {
      report = await shadowRun(h.js, h.jsm, {
        ...evalOptionsOf(h.config),
        book,
        scope,
        version,
        from: candidate ? candidate.rule.file : target,
        samples,
        tenant,
        file,
        threads,
        store: await h.store(),
        signal: cancel.signal,
        onProgress: (done, total) => progress.set(done, total),
      });
    } finally {
      progress.stop();
      cancel.dispose();
    }
    process.stdout.write(json ? `${JSON.stringify(report)}\n` : shadowMarkdown(report));
    if (report.status === "cancelled") {
      console.error(`${NAME}: cancelled; the partial report is saved as ${report.id}`);
      return 130;
    }
    return 0;
  });
}

/** The candidate in a rules file: its only rule, or the one `--rule` names; where it joins (the file's tenant). */
function fileCandidate(path: string, id: string | undefined, tenant: string | undefined) {
  const rules = readRuleFiles(path); // RulesError (exit 1) names each problem
  const picked = id === undefined ? rules : rules.filter((r) => r.rule.id === id);
  const ids = [...new Set(rules.map((r) => r.rule.id))].join(", ") || "none";
  if (picked.length === 0) throw new UsageError(id === undefined ? `${NAME}: ${path} holds no rule` : `${NAME}: --rule ${id}: ${path} has no rule ${id} (it has: ${ids})`);
  if (picked.length > 1) {
    const listed = picked.map((r) => `${r.tenant === "*" ? "" : `${r.tenant}/`}${r.rule.id}${r.rule.version === undefined ? "" : `@${r.rule.version}`}`).join(", ");
    throw new UsageError(
      id === undefined
        ? `${NAME}: ${path} holds ${picked.length} rules (${listed}); pick the candidate with --rule ID`
        : `${NAME}: --rule ${id}: ${path} holds ${picked.length} versions of it (${listed}); put the candidate in a file of its own`,
    );
  }
  const r = picked[0]!;
  if (tenant !== undefined && r.tenant !== "*" && r.tenant !== tenant) {
    throw new UsageError(`${NAME}: --tenant ${tenant}: the candidate is a rule of tenant ${r.tenant} (${r.file}); give --tenant ${r.tenant}, or none`);
  }
  return { rule: r, scope: r.tenant };
}

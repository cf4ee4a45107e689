/**
 * The rule language: schema, compilation and the pure evaluator. Only
 * `files.ts` touches the file system; everything else is pure.
 */
export { parseInstant, RULE_ID, RuleFileSchema, RuleSchema, StoredRuleSchema, type Rule, type RuleFile, type RuleInput } from "./schema.ts";
export { compileCondition, ConditionError, MAX_CONDITION_DEPTH } from "./condition.ts";
export { compileRuleSet, RuleBook, TenantRules, type RuleSet, type RuleSource, type RuleVersion } from "./ruleset.ts";
export { checkRuleBook, checkRuleSet, type RuleIssue } from "./validate.ts";
export { addPeriod, streakStats, SUM_SCALE, TRIGGER_LIMIT } from "./kinds/mod.ts";
export { achievementKey, emptyEvalState, evaluate, needsOrdering, progressOf, unlockId, type EvalState, type Evaluation, type Progress, type Unlock, type UnlockRef } from "./evaluate.ts";
export { checkedRuleFiles, checkRuleFile, loadRules, readRuleFiles, RulesError, type FileRule, type RuleProblem } from "./files.ts";
export { MAX_LIST, MAX_REWARD_BYTES, MAX_RULE_BYTES, MAX_TARGET, MAX_TIERS } from "./bounds.ts";

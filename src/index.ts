/**
 * achd as a library — the package entry (`import … from "achd"`). What is
 * exported here is the supported surface; everything else under `src/` is
 * internal and may change without notice.
 *
 * - the engine: {@link startEngine} runs workers, the HTTP API and, without
 *   `nats.url`, its own nats-server; `Engine.stop()` drains it;
 * - configuration: {@link loadConfig} (file + environment, validated by
 *   {@link ConfigSchema});
 * - the contract: {@link EventSchema} and {@link validateEvent} for events,
 *   {@link RuleSchema} and {@link RuleFileSchema} for rules;
 * - rules: {@link loadRules} reads and validates a rules file or folder
 *   (throws {@link RulesError} naming every problem), {@link checkRuleSet}
 *   checks the references between rules, {@link compileRuleSet} makes a
 *   rule set to evaluate;
 * - the evaluator, pure: {@link evaluate} (one event against the evaluator
 *   state), {@link applyEvents} (a user's events against the user's whole
 *   state, with dedup and fingerprints), {@link progressOf}, and
 *   {@link simulate} (rules over an event list, in memory).
 */
export { startEngine, type Engine } from "./engine.ts";
export { ConfigError, ConfigSchema, loadConfig, type Config, type ConfigInput } from "./config/mod.ts";
export { EventSchema, validateEvent, type DecodeResult, type Event, type EventInput, type Rejection, type ValidEvent } from "./events/mod.ts";
export {
  checkRuleSet,
  compileRuleSet,
  emptyEvalState,
  evaluate,
  loadRules,
  progressOf,
  RuleBook,
  RuleFileSchema,
  RuleSchema,
  RulesError,
  type EvalState,
  type Evaluation,
  type Progress,
  type Rule,
  type RuleFile,
  type RuleInput,
  type RuleIssue,
  type RuleProblem,
  type RuleSet,
  type RuleSource,
  type Unlock,
} from "./rules/mod.ts";
export { applyEvents, emptyUserState, unlockEvent, type FingerprintSpec, type SeqEvent, type UnlockEvent, type UserState } from "./core/mod.ts";
export { simulate, type Simulation } from "./sim/mod.ts";
export { createLogger, type Logger } from "./util/log.ts";

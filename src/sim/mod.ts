/** The offline simulator: the workers' evaluation path over an event list, without NATS. */
export { InMemoryEvaluator, simulate, unlockLine, userProgress, type Simulation } from "./simulate.ts";

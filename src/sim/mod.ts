/** The offline simulator: the workers' evaluation path over an event list, without NATS. */
export * from "./simulate.ts";

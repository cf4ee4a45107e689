import { expect } from "vitest";
import { ConfigError } from "../../src/config/mod.ts";

/** The ConfigError `fn` throws; fails the test when it throws something else or nothing. */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

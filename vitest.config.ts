import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration suites each start their own nats-server; two at a time fit two cores.
    maxWorkers: 2,
  },
});

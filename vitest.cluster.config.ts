import { defineConfig } from "vitest/config";

// The quarantined three-node cluster scenario (see its header); not part of `npm test`.
export default defineConfig({
  test: {
    include: ["test/integration/cluster.scenario.ts"],
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});

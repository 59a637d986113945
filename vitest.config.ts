import { defineConfig } from "vitest/config";

// Tests run against the TypeScript sources; tests that start `ovs` as a process use dist/ (built by
// the test command's tsc step before vitest runs).
export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "tests/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: "forks",
    fileParallelism: true,
    maxWorkers: 2,
  },
});

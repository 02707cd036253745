import { defineConfig } from "vitest/config"

// The Docker suite (test/docker): an engine, image builds and a compose stack, one file at a time.
export default defineConfig({
  test: {
    include: ["test/docker/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
  },
})

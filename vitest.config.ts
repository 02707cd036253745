import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["{libs,apps}/*/test/**/*.test.ts", "test/**/*.test.ts"],
    // The Docker suite runs on its own afterwards (vitest.docker.config.ts): its image builds would
    // starve the timed end-to-end tests of CPU.
    exclude: ["**/node_modules/**", "test/docker/**"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})

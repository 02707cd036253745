import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["{libs,apps}/*/test/**/*.test.ts", "test/**/*.test.ts"],
    // The Docker suite runs on its own afterwards (vitest.docker.config.ts): its image builds would
    // starve the timed end-to-end tests of CPU.
    exclude: ["**/node_modules/**", "test/docker/**"],
    // `npm run test:coverage`: the unit tests. They load the sources and the compiled libraries, which
    // map back to the sources; the end-to-end tests run the bundle in child processes, not counted.
    coverage: {
      provider: "v8",
      include: ["{libs,apps}/*/{src,dist}/**/*.{ts,js}"],
      exclude: ["**/dist/bundle/**", "**/*.d.ts"],
    },
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})

// Bundles each app into one file per entry point: loading thousands of ESM modules made every
// command start in seconds; one bundle starts in a fraction of that.
import { build } from "esbuild"

const apps = [
  { name: "cli", entries: ["apps/cli/dist/main.js", "libs/transfer/dist/HashWorker.js"] },
  { name: "signal", entries: ["apps/signal/dist/main.js"] },
]

await Promise.all(
  apps.map((app) =>
    build({
      entryPoints: app.entries,
      entryNames: "[name]",
      outdir: `apps/${app.name}/dist/bundle`,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      // The native addon loads its prebuilt binary relative to its own package.
      external: ["node-datachannel"],
      // Bundled CommonJS dependencies (ws) still call require().
      banner: {
        js: "import { createRequire as __p2palRequire } from 'node:module'; const require = __p2palRequire(import.meta.url);",
      },
      sourcemap: true,
      logLevel: "warning",
    }),
  ),
)

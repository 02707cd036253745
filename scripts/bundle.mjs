// Bundles each app into one file per entry point: loading thousands of ESM modules made every
// command start in seconds; one bundle starts in a fraction of that.
import { build } from "esbuild"
import { execFileSync } from "node:child_process"
import { copyFile } from "node:fs/promises"

const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  // The native addon loads its prebuilt binary relative to its own package, and the zstd WebAssembly
  // build its .wasm file.
  external: ["node-datachannel", "@bokuweb/zstd-wasm"],
  sourcemap: true,
  logLevel: "warning",
}
const esm = {
  ...common,
  format: "esm",
  entryNames: "[name]",
  // Bundled CommonJS dependencies (ws) still call require().
  banner: {
    js: "import { createRequire as __p2palRequire } from 'node:module'; const require = __p2palRequire(import.meta.url);",
  },
}
const cliDir = "apps/cli/dist/bundle"

await Promise.all([
  build({ ...esm, entryPoints: ["apps/signal/dist/main.js"], outdir: "apps/signal/dist/bundle" }),
  build({ ...esm, entryPoints: ["libs/transfer/dist/HashWorker.js"], outdir: cliDir }),
  build({ ...esm, entryPoints: ["libs/transfer/dist/ReadWorker.js"], outdir: cliDir }),
  // CommonJS, so that apps/cli/start.cjs can run it from a V8 code cache (vm.Script; Node 20 has no
  // such cache for ES modules).
  build({
    ...common,
    entryPoints: ["apps/cli/dist/main.js"],
    outfile: `${cliDir}/p2pal.cjs`,
    format: "cjs",
    define: { "import.meta.url": "__p2palUrl" },
    banner: { js: "const __p2palUrl = require('node:url').pathToFileURL(__filename).href;" },
  }),
])
await copyFile("apps/cli/start.cjs", `${cliDir}/main.cjs`)
// One run that only starts the CLI leaves the code cache behind (see apps/cli/start.cjs).
execFileSync(process.execPath, [`${cliDir}/main.cjs`, "--version"], {
  env: { ...process.env, P2PAL_WRITE_CODE_CACHE: "1" },
  stdio: "ignore",
})

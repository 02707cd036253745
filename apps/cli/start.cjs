// The CLI's entry point: runs the bundle (p2pal.cjs) from the V8 code cache the build left beside it
// (scripts/bundle.mjs). Compiling the bundle and the functions that run as it starts took about a
// quarter of a second of every command here, and Node 20 keeps no code cache of its own. A cache that
// does not match (another Node) is rejected by V8, and the bundle is compiled as it would be without.
"use strict"
// Syncs of many small files side by side let the file system commit them together (a receiver places
// files in groups, see Placer.ts): libuv's 4 threads halve what 16 manage. Read once, at the pool's first use.
process.env.UV_THREADPOOL_SIZE ??= "16"
const { readFileSync, writeFileSync } = require("node:fs")
const Module = require("node:module")
const { join } = require("node:path")
const { Script } = require("node:vm")

const file = join(__dirname, "p2pal.cjs")
const cacheFile = `${file}.cache`
let cachedData
try {
  cachedData = readFileSync(cacheFile)
} catch {
  // Not built: compiled afresh.
}
// The shebang esbuild keeps is no JavaScript inside a function; the blank line keeps line numbers.
const source = readFileSync(file, "utf8").replace(/^#!.*/, "")
const script = new Script(Module.wrap(source), { filename: file, cachedData })
const bundle = { exports: {} }
script.runInThisContext()(bundle.exports, Module.createRequire(file), bundle, file, __dirname)
// The build runs the CLI once this way: the cache then holds every function compiled until it exits.
if (process.env.P2PAL_WRITE_CODE_CACHE === "1")
  process.on("exit", () => writeFileSync(cacheFile, script.createCachedData()))

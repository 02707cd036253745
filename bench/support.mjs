// What both benches need: child processes tracked for peak RSS and cleaned up on any exit, their output
// lines, timeouts, and the signal app.
import { spawn, spawnSync } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

export const root = fileURLToPath(new URL("..", import.meta.url))
export const benchDir = join(root, ".bench")
export const MiB = 1024 * 1024

// Every child and run directory we create, so a failure or Ctrl+C leaves neither behind.
const children = new Set()
export const runDirs = new Set()
// Half-written test files (.bench/data-*.tmp): removed if the run ends before they are complete.
export const partialFiles = new Set()
// The link bench's network namespaces.
export const namespaces = new Set()
process.on("exit", () => {
  children.forEach((proc) => proc.child.kill("SIGKILL"))
  runDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true }))
  partialFiles.forEach((file) => rmSync(file, { force: true }))
  // A namespace whose last process is still dying goes with that process.
  namespaces.forEach((ns) => spawnSync("ip", ["netns", "del", ns]))
})
process.on("SIGINT", () => process.exit(130))
process.on("SIGTERM", () => process.exit(143))

// Starts a child with piped stdout/stderr, tracks its peak RSS and keeps the tail of its stderr for errors.
export function start(name, command, args, { stdin = "ignore", env = process.env } = {}) {
  const child = spawn(command, args, { cwd: root, env, stdio: [stdin, "pipe", "pipe"] })
  const proc = { child, name, stderr: "", peakRss: 0 }
  children.add(proc)
  child.stderr.setEncoding("utf8").on("data", (text) => (proc.stderr = (proc.stderr + text).slice(-4000)))
  // The bin/p2pal* wrappers `exec node`, so this PID becomes the node process itself.
  const readPeak = () => {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))
      if (match) proc.peakRss = Math.max(proc.peakRss, Number(match[1]) * 1024)
    } catch {
      // Already reaped: the last reading stands.
    }
  }
  const poll = setInterval(readPeak, 50)
  proc.exited = new Promise((resolve) => {
    child.once("error", (error) => resolve({ code: null, error, at: performance.now() }))
    child.once("exit", (code, signal) => resolve({ code, signal, at: performance.now() }))
  }).then((result) => {
    clearInterval(poll)
    children.delete(proc)
    return result
  })
  readPeak()
  proc.lines = createInterface({ input: child.stdout })
  return proc
}

/** `start`, inside network namespace `ns` when one is given; `ip netns exec` execs the command, so the
 * peak RSS is still the command's own. */
export function startIn(ns, name, command, args, options) {
  return ns === undefined
    ? start(name, command, args, options)
    : start(name, "ip", ["netns", "exec", ns, command, ...args], options)
}

export function describeExit(proc, result) {
  const how = result.error
    ? result.error.message
    : result.signal
      ? `signal ${result.signal}`
      : `code ${result.code}`
  // The bin/p2pal* wrappers run the built dist files; a missing one means nobody ran the build yet.
  const hint = /Cannot find module|ENOENT/.test(`${proc.stderr} ${how}`)
    ? "\n(is p2pal built? run `npm run build`, or pass --only raw)"
    : ""
  return `${proc.name} failed (${how})${proc.stderr ? `:\n${proc.stderr.trimEnd()}` : ""}${hint}`
}

export async function expectSuccess(proc, timeoutMs) {
  const result = await withTimeout(proc.exited, timeoutMs, `${proc.name} did not exit`)
  if (result.code !== 0) throw new Error(describeExit(proc, result))
  return result
}

// Stops a child that is still running: SIGTERM first so it can clean up, SIGKILL if it does not.
export async function stop(proc) {
  if (!children.has(proc)) return
  proc.child.kill("SIGTERM")
  const timer = setTimeout(() => proc.child.kill("SIGKILL"), 2000)
  await proc.exited
  clearTimeout(timer)
}

/** What `withTimeout` rejects with: the link bench reports these as runs that did not finish. */
export class TimeoutError extends Error {}

export async function withTimeout(promise, ms, message) {
  let timer
  const timeout = new Promise(
    (_, reject) => (timer = setTimeout(() => reject(new TimeoutError(message)), ms)),
  )
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

// Resolves with the first stdout line that `pick` maps to a value; rejects if the child exits first.
export function waitForLine(proc, pick, timeoutMs, what) {
  return withTimeout(
    new Promise((resolve, reject) => {
      proc.lines.on("line", (line) => {
        const value = pick(line)
        if (value !== undefined) resolve(value)
      })
      proc.exited.then((result) =>
        reject(new Error(`${describeExit(proc, result)}\n(while waiting for ${what})`)),
      )
    }),
    timeoutMs,
    `${proc.name} did not print ${what}`,
  )
}

/** The built signal app on a free port of `host`, in namespace `ns` if given; `url` is what it printed. */
export async function startSignal({ ns, host = "127.0.0.1" } = {}) {
  const server = startIn(ns, "p2pal-signal", join(root, "bin/p2pal-signal"), [
    "--port",
    "0",
    "--host",
    host,
    "--metrics-port",
    "0",
  ])
  const url = await waitForLine(
    server,
    (line) => /^p2pal-signal listening on (http:\/\/\S+)/.exec(line)?.[1],
    15_000,
    "its listening line",
  )
  return { server, url }
}

// `npm run demo`: one complete p2pal transfer on this machine, checked byte for byte. It starts the
// embedded signal server (in-memory store) on a free loopback port, sends a sample directory with
// `p2pal send -r` and receives it with `p2pal recv`. No network needed: --stun '' skips the public
// STUN server, which is unreachable offline and would only slow the connection down.
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { performance } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const p2pal = join(root, "bin/p2pal")
const p2palSignal = join(root, "bin/p2pal-signal")

// Nested folders, an empty file, an empty folder, a binary file and a name with spaces and non-ASCII:
// the shapes a directory transfer has to get right.
const sample = {
  files: {
    "README.txt":
      "Hello from p2pal!\nThis folder travelled peer to peer; the signal server never saw a byte of it.\n",
    "empty.txt": "",
    "photos/2024/summer/notes.md": "# Summer 2024\n\n- nested folders arrive in place\n",
    "Grüße aus Köln – 東京 notes.txt": "names with spaces and non-ASCII characters survive the trip\n",
    "data/random.bin": randomBytes(5 * 1024 * 1024),
  },
  emptyDirs: ["empty folder"],
}

// Every child still running, so a failure or Ctrl+C never leaves a server or peer behind.
const running = new Set()
process.on("exit", () => running.forEach((proc) => proc.child.kill("SIGKILL")))
process.on("SIGINT", () => process.exit(130))
process.on("SIGTERM", () => process.exit(143))

function run(name, command, args, stdio) {
  const child = spawn(command, args, { cwd: root, stdio })
  const proc = { name, child, stderr: "" }
  running.add(proc)
  child.stderr?.setEncoding("utf8").on("data", (text) => (proc.stderr = (proc.stderr + text).slice(-4000)))
  proc.exited = new Promise((resolve) => {
    child.once("error", (error) => resolve({ error }))
    child.once("exit", (code, signal) => resolve({ code, signal }))
  }).then((result) => {
    running.delete(proc)
    return result
  })
  proc.lines = child.stdout && createInterface({ input: child.stdout })
  return proc
}

function failure(proc, result) {
  // The bin/ wrappers run built files: a missing wrapper or module means the build never ran.
  if (result.error?.code === "ENOENT" || /ERR_MODULE_NOT_FOUND|Cannot find module/.test(proc.stderr)) {
    return new Error("p2pal is not built: run `npm ci` first (it builds through `prepare`)")
  }
  const how =
    result.error?.message ?? (result.signal ? `signal ${result.signal}` : `exit code ${result.code}`)
  return new Error(`${proc.name} failed (${how})${proc.stderr ? `:\n${proc.stderr.trimEnd()}` : ""}`)
}

function withTimeout(promise, ms, message) {
  let timer
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// The first stdout line that `pick` maps to a value; fails if the child exits before printing it.
function firstLine(proc, pick, what) {
  const found = new Promise((resolve, reject) => {
    proc.lines.on("line", (line) => {
      const value = pick(line)
      if (value !== undefined) resolve(value)
    })
    proc.exited.then((result) => reject(failure(proc, result)))
  })
  return withTimeout(found, 15_000, `${proc.name} did not print ${what} within 15 s`)
}

async function succeeds(proc, timeoutMs) {
  const result = await withTimeout(
    proc.exited,
    timeoutMs,
    `${proc.name} did not finish within ${timeoutMs / 1000} s`,
  )
  if (result.code !== 0) throw failure(proc, result)
}

// SIGTERM lets the server and peers shut down cleanly; SIGKILL if they take too long.
async function stopAll() {
  const procs = [...running]
  procs.forEach((proc) => proc.child.kill("SIGTERM"))
  await withTimeout(Promise.all(procs.map((proc) => proc.exited)), 5000, "").catch(() =>
    procs.forEach((proc) => proc.child.kill("SIGKILL")),
  )
}

async function createSample(dir) {
  for (const [path, content] of Object.entries(sample.files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true })
    await writeFile(join(dir, path), content)
  }
  for (const path of sample.emptyDirs) await mkdir(join(dir, path), { recursive: true })
}

// Walks both trees together: same names and kinds at every level (so nothing missing, nothing extra,
// no leftover temp files) and identical bytes in every file.
async function compareTrees(sent, received, path = ".") {
  const list = async (dir) =>
    (await readdir(join(dir, path), { withFileTypes: true }))
      .map((entry) => ({ name: entry.name, dir: entry.isDirectory() }))
      .sort((a, b) => (a.name < b.name ? -1 : 1))
  const expected = await list(sent)
  const actual = await list(received).catch(() => {
    throw new Error(`${path} was not received`)
  })
  const shape = (entries) => entries.map((entry) => `${entry.name}${entry.dir ? "/" : ""}`).join(", ")
  if (shape(expected) !== shape(actual)) {
    throw new Error(`${path} differs\n  sent:     ${shape(expected)}\n  received: ${shape(actual)}`)
  }
  const totals = { files: 0, dirs: 0, bytes: 0 }
  for (const entry of expected) {
    const child = join(path, entry.name)
    if (entry.dir) {
      const inner = await compareTrees(sent, received, child)
      totals.files += inner.files
      totals.dirs += inner.dirs + 1
      totals.bytes += inner.bytes
    } else {
      const [a, b] = await Promise.all([readFile(join(sent, child)), readFile(join(received, child))])
      if (!a.equals(b)) throw new Error(`${child} differs from the file sent`)
      totals.files += 1
      totals.bytes += a.length
    }
  }
  return totals
}

async function main() {
  const work = await mkdtemp(join(tmpdir(), "p2pal-demo-"))
  try {
    const server = run(
      "p2pal-signal",
      p2palSignal,
      ["--port", "0", "--host", "127.0.0.1", "--metrics-port", "0"],
      ["ignore", "pipe", "pipe"],
    )
    const url = await firstLine(
      server,
      (line) => /^p2pal-signal listening on (http:\/\/\S+)/.exec(line)?.[1],
      "its address",
    )
    console.log(`demo: signal server listening on ${url}`)

    const source = join(work, "p2pal-demo")
    await createSample(source)
    const out = join(work, "received")
    await mkdir(out)
    console.log(`demo: sample directory ${source}`)

    const sender = run(
      "p2pal send",
      p2pal,
      ["send", "-r", "-q", "--stun", "", "--server", url, source],
      ["ignore", "pipe", "pipe"],
    )
    const code = await firstLine(sender, (line) => line.trim() || undefined, "a join code")
    console.log(`demo: p2pal send is waiting with join code ${code}`)
    console.log(`demo: p2pal recv -y --stun '' --server ${url} --out ${out} ${code}\n`)

    const startedAt = performance.now()
    const receiver = run(
      "p2pal recv",
      p2pal,
      ["recv", "-y", "--stun", "", "--server", url, "--out", out, code],
      ["ignore", "inherit", "inherit"],
    )
    await succeeds(receiver, 60_000)
    const seconds = (performance.now() - startedAt) / 1000
    await succeeds(sender, 15_000)

    const totals = await compareTrees(source, join(out, "p2pal-demo"))
    const mib = (totals.bytes / 1024 / 1024).toFixed(1)
    console.log(
      `\ndemo: verified ${totals.files} files in ${totals.dirs} folders, ${totals.bytes} bytes (${mib} MiB), ` +
        `identical byte for byte; received in ${seconds.toFixed(2)} s`,
    )
  } finally {
    // Only the server is still running after a success; after a failure the peers may be too.
    await stopAll()
    await rm(work, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(`demo failed: ${error.message}`)
  process.exit(1)
})

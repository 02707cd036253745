// Loopback throughput of p2pal against a bare node-datachannel pair (the stack's ceiling), in one run on
// one machine, as DESIGN.md section 7 asks. Prints one table row per run and the best run of each mode.
//
//   npm run bench -- [--size 1GiB] [--runs N] [--only raw|p2pal] [--encrypt]
//   npm run bench -- --tree 10000,100000 [--runs N]     (trees of small files instead: see tree.mjs)
//
// Wall time runs from the receiver's start to its exit, with the sender already up and waiting, so both
// modes include process start, connection setup and teardown around the same bytes.
//
// Two latencies, both timed here in the parent from the moment it spawned the receiver, the same way for
// both modes:
//   1st byte ms  the receiver has its first DataChannel message: RAW prints a line on it; p2pal's first
//                message is the manifest, and its receiver prints "Receiving..." as soon as it is decoded
//                (no -q for this reason; without a TTY there are no progress bars, only a few lines).
//                p2pal's first file bytes follow one round trip later, after its Accept.
//   1st MiB ms   the first MiB (or the whole file, if smaller) has arrived: RAW prints a line on it; p2pal's
//                receiver writes a file's first chunk at once (then ~1 MiB batches), so this is when its
//                first bytes are on disk: the first non-empty file under the out dir, polled every 5 ms.
import { createHash, randomFillSync } from "node:crypto"
import { createReadStream, createWriteStream } from "node:fs"
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises"
import { basename, join } from "node:path"
import { performance } from "node:perf_hooks"
import { pipeline } from "node:stream/promises"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import {
  benchDir,
  expectSuccess,
  MiB,
  partialFiles,
  root,
  runDirs,
  start,
  startSignal,
  stop,
  waitForLine,
} from "./support.mjs"
import { benchTrees, Folders } from "./tree.mjs"

const { values: flags } = parseArgs({
  options: {
    size: { type: "string", default: "1GiB" },
    runs: { type: "string", default: "1" },
    only: { type: "string" },
    // Adds a third mode per round, p2pal-enc: `send --encrypt` (AES-256-GCM over every chunk).
    encrypt: { type: "boolean", default: false },
    // File counts of small-file trees to send instead of one big file.
    tree: { type: "string" },
  },
})
const bytes = parseSize(flags.size)
const runs = Number(flags.runs)
if (!Number.isInteger(runs) || runs < 1) usage(`--runs must be a positive integer, got ${flags.runs}`)
if (flags.only !== undefined && flags.only !== "raw" && flags.only !== "p2pal") {
  usage(`--only must be raw or p2pal, got ${flags.only}`)
}
// Generous enough for a slow machine (5 MB/s) yet bounded, so a stalled transfer fails instead of hanging.
const transferTimeoutMs = 60_000 + bytes / 5_000

function usage(message) {
  process.stderr.write(
    `${message}\nusage: npm run bench -- [--size 1GiB] [--runs N] [--only raw|p2pal] [--encrypt]\n       npm run bench -- --tree 10000,100000 [--runs N]\n`,
  )
  process.exit(2)
}

function parseSize(text) {
  const match = /^(\d+)\s*(B|KiB|MiB|GiB)?$/i.exec(text.trim())
  if (!match) usage(`--size takes bytes or a KiB/MiB/GiB amount (e.g. 256MiB), got ${text}`)
  const unit = { b: 1, kib: 1024, mib: MiB, gib: 1024 * MiB }[(match[2] ?? "b").toLowerCase()]
  const size = Number(match[1]) * unit
  if (!Number.isSafeInteger(size) || size <= 0) usage(`--size out of range: ${text}`)
  return size
}

async function runRaw() {
  const peer = fileURLToPath(new URL("raw-peer.mjs", import.meta.url))
  const sender = start("raw sender", process.execPath, [peer, "sender", String(bytes)], { stdin: "pipe" })
  let receiver
  let done
  let startedAt
  let firstByteMs
  let firstMiBMs
  // Signals from the sender queue up until the receiver exists; pipes keep them in order.
  const toReceiver = []
  const relay = (from, send) =>
    from.lines.on("line", (line) => {
      const message = JSON.parse(line)
      if (message.signal) send(line)
      if (message.error) from.stderr += `${message.error}\n`
      if (message.firstByte) firstByteMs ??= performance.now() - startedAt
      if (message.firstMiB) firstMiBMs ??= performance.now() - startedAt
      if (message.done) {
        done = message.done
        sender.child.stdin.write(JSON.stringify({ finish: true }) + "\n")
      }
    })
  relay(sender, (line) => (receiver ? receiver.child.stdin.write(line + "\n") : toReceiver.push(line)))
  try {
    await waitForLine(sender, (line) => (JSON.parse(line).ready ? true : undefined), 10_000, "ready")
    startedAt = performance.now()
    receiver = start("raw receiver", process.execPath, [peer, "receiver", String(bytes)], { stdin: "pipe" })
    relay(receiver, (line) => sender.child.stdin.write(line + "\n"))
    for (const line of toReceiver) receiver.child.stdin.write(line + "\n")
    const finished = await expectSuccess(receiver, transferTimeoutMs)
    await expectSuccess(sender, 10_000)
    if (done?.bytes !== bytes) throw new Error(`raw receiver got ${done?.bytes ?? 0} of ${bytes} bytes`)
    return result({ startedAt, finished, sender, receiver, firstByteMs, firstMiBMs })
  } finally {
    await Promise.all([sender, receiver].filter(Boolean).map(stop))
  }
}

// The test file lives under .bench/ (gitignored) and is reused by later runs of the same size. It is
// written under a temporary name and renamed last, so a half-written file is never mistaken for one.
async function sourceFile() {
  const file = join(benchDir, `data-${bytes}.bin`)
  const hashFile = `${file}.sha256`
  try {
    const [info, hash] = await Promise.all([stat(file), readFile(hashFile, "utf8")])
    if (info.size === bytes) return { file, hash: hash.trim() }
  } catch {
    // Not generated yet.
  }
  process.stderr.write(`generating ${bytes} random bytes in ${file}\n`)
  await mkdir(benchDir, { recursive: true })
  // Per process, so two benches generating at once do not write into one file; removed on Ctrl+C.
  const partial = `${file}.${process.pid}.tmp`
  partialFiles.add(partial)
  const hash = createHash("sha256")
  // Random bytes, so compression anywhere on the path cannot flatter the result.
  await pipeline(async function* () {
    for (let written = 0; written < bytes; written += 4 * MiB) {
      const block = randomFillSync(Buffer.allocUnsafe(Math.min(4 * MiB, bytes - written)))
      hash.update(block)
      yield block
    }
  }, createWriteStream(partial)).catch(async (error) => {
    await rm(partial, { force: true })
    throw error
  })
  const digest = hash.digest("hex")
  await writeFile(hashFile, digest)
  await rename(partial, file)
  partialFiles.delete(partial)
  return { file, hash: digest }
}

async function sha256(file) {
  const hash = createHash("sha256")
  await pipeline(createReadStream(file, { highWaterMark: MiB }), hash)
  return hash.digest("hex")
}

// The receiver writes to a temporary name first, so any non-empty file anywhere under `dir` counts: its
// first bytes on disk.
// Resolves with the ms from `since` to that moment, or undefined if `until` settles first.
async function watchFirstWrite(dir, since, until) {
  let over = false
  until.then(() => (over = true))
  const anyBytes = async () => {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => [])
    for (const entry of entries) {
      if (!entry.isFile()) continue
      const info = await stat(join(entry.parentPath, entry.name)).catch(() => undefined)
      if (info?.size > 0) return true
    }
    return false
  }
  while (!over) {
    if (await anyBytes()) return performance.now() - since
    await sleep(5)
  }
}

async function runP2pal(server, source, sendFlags = []) {
  const bin = join(root, "bin/p2pal")
  const runDir = await mkdtemp(join(benchDir, "run-"))
  runDirs.add(runDir)
  const outDir = join(runDir, "out")
  await mkdir(outDir)
  let sender
  let receiver
  try {
    sender = start("p2pal send", bin, [
      "send",
      "-q",
      ...sendFlags,
      "--stun",
      "",
      "--server",
      server,
      source.file,
    ])
    const code = await waitForLine(sender, (line) => line.trim() || undefined, 30_000, "a join code")
    const startedAt = performance.now()
    // No -q: "Receiving..." on stderr marks the manifest, its first DataChannel message.
    const recvArgs = ["recv", "-y", "--stun", "", "--server", server, "--out", outDir, code]
    receiver = start("p2pal recv", bin, recvArgs)
    let firstByteMs
    let seen = ""
    const onStderr = (text) => {
      seen = (seen + text).slice(-200)
      if (!/^Receiving\b/m.test(seen)) return
      firstByteMs = performance.now() - startedAt
      receiver.child.stderr.off("data", onStderr)
    }
    receiver.child.stderr.on("data", onStderr)
    const firstWrite = watchFirstWrite(outDir, startedAt, receiver.exited)
    const finished = await expectSuccess(receiver, transferTimeoutMs)
    await expectSuccess(sender, 30_000)
    const firstMiBMs = await firstWrite

    const received = join(outDir, basename(source.file))
    const info = await stat(received).catch(() => undefined)
    if (info?.size !== bytes) {
      throw new Error(`${received} has ${info?.size ?? "no"} bytes, expected ${bytes}`)
    }
    if ((await sha256(received)) !== source.hash) throw new Error(`${received} differs from ${source.file}`)
    return result({ startedAt, finished, sender, receiver, firstByteMs, firstMiBMs })
  } finally {
    await Promise.all([sender, receiver].filter(Boolean).map(stop))
    await rm(runDir, { recursive: true, force: true })
    runDirs.delete(runDir)
  }
}

/** One table row's figures, measured the same way for both modes. */
function result({ startedAt, finished, sender, receiver, firstByteMs, firstMiBMs }) {
  return {
    wallMs: finished.at - startedAt,
    senderRss: sender.peakRss,
    receiverRss: receiver.peakRss,
    firstByteMs,
    firstMiBMs,
  }
}

function printTable(results) {
  const best = (mode) =>
    results.filter((r) => r.mode === mode).reduce((a, b) => (a && a.wallMs <= b.wallMs ? a : b), undefined)
  const rawBest = best("raw")
  // A run is compared with the raw run of its own round; the "best" row with the best raw run.
  const ratioOf = (r) => {
    const raw = r.round === undefined ? rawBest : results.find((x) => x.mode === "raw" && x.round === r.round)
    return raw ? (raw.wallMs / r.wallMs).toFixed(2) : "-"
  }
  const rows = [
    [
      "mode",
      "bytes",
      "wall s",
      "MB/s",
      "Mbit/s",
      "vs raw",
      "send RSS MiB",
      "recv RSS MiB",
      "1st byte ms",
      "1st MiB ms",
    ],
  ]
  const row = (label, r) => {
    const seconds = r.wallMs / 1000
    rows.push([
      label,
      String(bytes),
      seconds.toFixed(2),
      (bytes / 1e6 / seconds).toFixed(1),
      ((bytes * 8) / 1e6 / seconds).toFixed(0),
      ratioOf(r),
      (r.senderRss / MiB).toFixed(0),
      (r.receiverRss / MiB).toFixed(0),
      r.firstByteMs === undefined ? "-" : r.firstByteMs.toFixed(0),
      r.firstMiBMs === undefined ? "-" : r.firstMiBMs.toFixed(0),
    ])
  }
  for (const mode of ["raw", "p2pal", "p2pal-enc"]) {
    const ofMode = results.filter((r) => r.mode === mode)
    ofMode.forEach((r, i) => row(`${mode} #${i + 1}`, r))
    if (ofMode.length > 1) row(`${mode} best`, { ...best(mode), round: undefined })
  }
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)))
  for (const r of rows) {
    console.log(
      r.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join("  "),
    )
  }
  for (const mode of ["p2pal", "p2pal-enc"]) {
    const perRound = results
      .filter((r) => r.mode === mode)
      .map((r) => Number(ratioOf(r)))
      .filter(Number.isFinite)
      .sort((a, b) => a - b)
    if (perRound.length === 0 || !rawBest) continue
    const median = perRound[Math.floor((perRound.length - 1) / 2)]
    console.log(
      `${mode}/raw throughput: best vs best ${ratioOf({ ...best(mode), round: undefined })}, median of rounds ${median.toFixed(2)}`,
    )
  }
}

async function main() {
  const results = []
  // The server first: it fails fast when p2pal is not built, before a large file is generated.
  const signal = flags.only === "raw" ? undefined : await startSignal()
  try {
    const source = signal === undefined ? undefined : await sourceFile()
    // Rounds alternate raw and p2pal, so a noisy neighbour on this machine hits both alike.
    for (let i = 1; i <= runs; i++) {
      if (flags.only !== "p2pal") {
        process.stderr.write(`raw run ${i}/${runs}...\n`)
        results.push({ mode: "raw", round: i, ...(await runRaw()) })
      }
      if (signal !== undefined) {
        process.stderr.write(`p2pal run ${i}/${runs}...\n`)
        results.push({ mode: "p2pal", round: i, ...(await runP2pal(signal.url, source)) })
      }
      if (signal !== undefined && flags.encrypt) {
        process.stderr.write(`p2pal --encrypt run ${i}/${runs}...\n`)
        results.push({ mode: "p2pal-enc", round: i, ...(await runP2pal(signal.url, source, ["--encrypt"])) })
      }
    }
  } finally {
    if (signal !== undefined) await stop(signal.server)
  }
  printTable(results)
}

const treeCounts = flags.tree?.split(",").map(Number)
if (treeCounts?.some((n) => !Number.isInteger(n) || n < Folders))
  usage(`--tree takes file counts of at least ${Folders}, comma-separated, got ${flags.tree}`)

const bench = treeCounts === undefined ? main() : benchTrees(treeCounts, runs)
bench.catch((error) => {
  process.stderr.write(`bench failed: ${error.message}\n`)
  process.exit(1)
})

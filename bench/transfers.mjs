// One file through each tool, timed the same way: the loopback bench (throughput.mjs) and the link bench
// (link.mjs) both run these. A side given a network namespace (`senderNs`, `receiverNs`) runs in it.
//
// Wall time runs from the receiver's start to its exit, with the sender already up and waiting, so every
// mode includes process start, connection setup and teardown around the same bytes.
//
// Two latencies, both timed in the parent from the moment it spawned the receiver:
//   1st byte ms  the receiver has its first message: RAW prints a line on it; p2pal's first message is the
//                manifest, and its receiver prints "Receiving..." as soon as it is decoded (no -q for this
//                reason; without a TTY there are no progress bars, only a few lines). p2pal's first file
//                bytes follow one round trip later, after its Accept.
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
import {
  benchDir,
  expectSuccess,
  MiB,
  partialFiles,
  root,
  runDirs,
  startIn,
  stop,
  waitForLine,
} from "./support.mjs"

/** Bytes from "256MiB", "1GiB", "4096"...; undefined if `text` is none of these. */
export function parseSize(text) {
  const match = /^(\d+)\s*(B|KiB|MiB|GiB)?$/i.exec(text.trim())
  if (!match) return undefined
  const unit = { b: 1, kib: 1024, mib: MiB, gib: 1024 * MiB }[(match[2] ?? "b").toLowerCase()]
  const size = Number(match[1]) * unit
  return Number.isSafeInteger(size) && size > 0 ? size : undefined
}

// The test file lives under .bench/ (gitignored) and is reused by later runs of the same size. It is
// written under a temporary name and renamed last, so a half-written file is never mistaken for one.
export async function sourceFile(bytes) {
  const file = join(benchDir, `data-${bytes}.bin`)
  const hashFile = `${file}.sha256`
  try {
    const [info, hash] = await Promise.all([stat(file), readFile(hashFile, "utf8")])
    if (info.size === bytes) return { file, bytes, hash: hash.trim() }
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
  return { file, bytes, hash: digest }
}

async function sha256(file) {
  const hash = createHash("sha256")
  await pipeline(createReadStream(file, { highWaterMark: MiB }), hash)
  return hash.digest("hex")
}

/** Throws unless `received` has the bytes of `source`. */
async function verify(received, source) {
  const info = await stat(received).catch(() => undefined)
  if (info?.size !== source.bytes) {
    throw new Error(`${received} has ${info?.size ?? "no"} bytes, expected ${source.bytes}`)
  }
  if ((await sha256(received)) !== source.hash) throw new Error(`${received} differs from ${source.file}`)
}

/** `body` with a fresh directory under .bench/, removed after it (or on any exit). */
async function inRunDir(body) {
  const dir = await mkdtemp(join(benchDir, "run-"))
  runDirs.add(dir)
  try {
    return await body(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
    runDirs.delete(dir)
  }
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

/**
 * The bare node-datachannel pair of raw-peer.mjs moving `bytes`; this parent relays the JSON-line signals
 * between the two, so they need no signal app and no STUN (ICE pairs their host candidates).
 */
export async function runRaw({ bytes, timeoutMs, senderNs, receiverNs }) {
  const peer = fileURLToPath(new URL("raw-peer.mjs", import.meta.url))
  const sender = startIn(senderNs, "raw sender", process.execPath, [peer, "sender", String(bytes)], {
    stdin: "pipe",
  })
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
    receiver = startIn(receiverNs, "raw receiver", process.execPath, [peer, "receiver", String(bytes)], {
      stdin: "pipe",
    })
    relay(receiver, (line) => sender.child.stdin.write(line + "\n"))
    for (const line of toReceiver) receiver.child.stdin.write(line + "\n")
    const finished = await expectSuccess(receiver, timeoutMs)
    await expectSuccess(sender, 10_000)
    if (done?.bytes !== bytes) throw new Error(`raw receiver got ${done?.bytes ?? 0} of ${bytes} bytes`)
    return result({ startedAt, finished, sender, receiver, firstByteMs, firstMiBMs })
  } finally {
    await Promise.all([sender, receiver].filter(Boolean).map(stop))
  }
}

/**
 * The real CLI: `p2pal send` of `source`, then `p2pal recv` of its code, each through the signal app at
 * its own URL (`senderServer`, `receiverServer`: the app may be reached at another address from each
 * side), with no STUN server. The received file is verified.
 */
export const runP2pal = (options) => inRunDir((dir) => p2palIn(dir, options))

async function p2palIn(
  dir,
  { source, timeoutMs, senderServer, receiverServer = senderServer, sendFlags = [], senderNs, receiverNs },
) {
  const bin = join(root, "bin/p2pal")
  const outDir = join(dir, "out")
  await mkdir(outDir)
  let sender
  let receiver
  try {
    sender = startIn(senderNs, "p2pal send", bin, [
      ...["send", "-q", ...sendFlags],
      ...["--stun", "", "--server", senderServer, source.file],
    ])
    const code = await waitForLine(sender, (line) => line.trim() || undefined, 30_000, "a join code")
    const startedAt = performance.now()
    // No -q: "Receiving..." on stderr marks the manifest, its first DataChannel message.
    const recvArgs = ["recv", "-y", "--stun", "", "--server", receiverServer, "--out", outDir, code]
    receiver = startIn(receiverNs, "p2pal recv", bin, recvArgs)
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
    const finished = await expectSuccess(receiver, timeoutMs)
    await expectSuccess(sender, 30_000)
    const firstMiBMs = await firstWrite
    await verify(join(outDir, basename(source.file)), source)
    return result({ startedAt, finished, sender, receiver, firstByteMs, firstMiBMs })
  } finally {
    await Promise.all([sender, receiver].filter(Boolean).map(stop))
  }
}

/**
 * One TCP connection of tcp-peer.mjs moving `source` file to file (both on the disk, as p2pal's are); the
 * receiver listens first, so here the wall time starts at the sender's start. The received file is
 * verified.
 */
export const runTcp = (options) => inRunDir((dir) => tcpIn(dir, options))

async function tcpIn(dir, { source, timeoutMs, receiverAddress, senderNs, receiverNs }) {
  const peer = fileURLToPath(new URL("tcp-peer.mjs", import.meta.url))
  const out = join(dir, "out.bin")
  const port = "9000"
  let sender
  const receiver = startIn(receiverNs, "tcp receiver", process.execPath, [peer, "receiver", port, out])
  try {
    let startedAt
    let firstByteMs
    receiver.lines.on("line", (line) => {
      if (JSON.parse(line).firstByte) firstByteMs ??= performance.now() - startedAt
    })
    await waitForLine(receiver, (line) => (JSON.parse(line).ready ? true : undefined), 10_000, "ready")
    startedAt = performance.now()
    sender = startIn(senderNs, "tcp sender", process.execPath, [
      peer,
      "sender",
      receiverAddress,
      port,
      source.file,
    ])
    const finished = await expectSuccess(receiver, timeoutMs)
    await expectSuccess(sender, 10_000)
    await verify(out, source)
    return result({ startedAt, finished, sender, receiver, firstByteMs })
  } finally {
    await Promise.all([sender, receiver].filter(Boolean).map(stop))
  }
}

/** One run's figures, measured the same way for every mode. */
function result({ startedAt, finished, sender, receiver, firstByteMs, firstMiBMs }) {
  return {
    wallMs: finished.at - startedAt,
    senderRss: sender.peakRss,
    receiverRss: receiver.peakRss,
    firstByteMs,
    firstMiBMs,
  }
}

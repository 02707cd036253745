// Trees of many small files through p2pal on loopback (real signal app, real CLI processes, `send -r`):
// how many files a second arrive verified, and what that costs. Run by `npm run bench -- --tree 10000,100000`.
//
// Each tree has `count` files of 1 to 4 KiB of random bytes in 100 folders, made once under .bench/ and
// reused. Wall time runs from the receiver's start to its exit (the sender already waiting), as in the
// byte bench. The receiver's checkpoint directory is sampled while it runs: its peak size shows whether
// saving progress costs more as the files add up.
import { createHash, randomBytes } from "node:crypto"
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises"
import { join, relative } from "node:path"
import { performance } from "node:perf_hooks"
import { setTimeout as sleep } from "node:timers/promises"
import {
  benchDir,
  expectSuccess,
  MiB,
  root,
  runDirs,
  start,
  startSignal,
  stop,
  waitForLine,
} from "./support.mjs"

export const Folders = 100

/** Every file under `dir`, as sorted paths relative to it. */
async function filesUnder(dir) {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort()
}

/** One digest over every file's relative path and bytes: equal trees, equal digests. */
async function treeDigest(dir) {
  const hash = createHash("sha256")
  for (const path of await filesUnder(dir)) hash.update(`${path}\0`).update(await readFile(join(dir, path)))
  return hash.digest("hex")
}

/** The tree of `count` files, made once: its folder, total bytes and digest. */
async function sourceTree(count) {
  const top = join(benchDir, `tree-${count}`)
  const done = join(top, "complete.json")
  try {
    return JSON.parse(await readFile(done, "utf8"))
  } catch {
    // Not made yet.
  }
  process.stderr.write(`making ${count} files of 1-4 KiB in ${top}\n`)
  await rm(top, { recursive: true, force: true })
  const dir = join(top, "tree")
  let bytes = 0
  for (let folder = 0; folder < Folders; folder++) {
    const sub = join(dir, `d${String(folder).padStart(2, "0")}`)
    await mkdir(sub, { recursive: true })
    const writes = []
    for (let i = folder; i < count; i += Folders) {
      const size = 1024 + Math.floor(Math.random() * 3 * 1024)
      bytes += size
      writes.push(writeFile(join(sub, `f${String(i).padStart(6, "0")}.bin`), randomBytes(size)))
    }
    await Promise.all(writes)
  }
  const made = { dir, count, bytes, digest: await treeDigest(dir) }
  // Written last, so an interrupted run is made again rather than trusted.
  await writeFile(`${done}.tmp`, JSON.stringify(made))
  await rename(`${done}.tmp`, done)
  return made
}

/** Bytes under `dir` right now, 0 if it is not there. */
async function bytesIn(dir) {
  const names = await readdir(dir).catch(() => [])
  const sizes = await Promise.all(
    names.map((n) =>
      stat(join(dir, n)).then(
        (s) => s.size,
        () => 0,
      ),
    ),
  )
  return sizes.reduce((a, b) => a + b, 0)
}

async function sendTree(server, source) {
  const bin = join(root, "bin/p2pal")
  const runDir = await mkdtemp(join(benchDir, "run-"))
  runDirs.add(runDir)
  const outDir = join(runDir, "out")
  const home = join(runDir, "home")
  const env = { ...process.env, P2PAL_HOME: home }
  let sender
  let receiver
  try {
    sender = start("p2pal send", bin, ["send", "-q", "-r", "--stun", "", "--server", server, source.dir], {
      env,
    })
    const code = await waitForLine(sender, (line) => line.trim() || undefined, 120_000, "a join code")
    const startedAt = performance.now()
    receiver = start(
      "p2pal recv",
      bin,
      ["recv", "-y", "-q", "--stun", "", "--server", server, "--out", outDir, code],
      {
        env,
      },
    )
    let checkpointPeak = 0
    let running = true
    const sampling = (async () => {
      while (running) {
        checkpointPeak = Math.max(checkpointPeak, await bytesIn(join(home, "checkpoints")))
        await sleep(100)
      }
    })()
    // Generous for a slow machine (20 files/s) yet bounded, so a stalled transfer fails instead of hanging.
    const finished = await expectSuccess(receiver, 60_000 + source.count * 50).finally(
      () => (running = false),
    )
    await sampling
    await expectSuccess(sender, 30_000)
    if ((await treeDigest(join(outDir, "tree"))) !== source.digest)
      throw new Error(`the received tree in ${outDir} differs from ${source.dir}`)
    return {
      count: source.count,
      bytes: source.bytes,
      wallMs: finished.at - startedAt,
      senderRss: sender.peakRss,
      receiverRss: receiver.peakRss,
      checkpointPeak,
    }
  } finally {
    await Promise.all([sender, receiver].filter(Boolean).map(stop))
    await rm(runDir, { recursive: true, force: true })
    runDirs.delete(runDir)
  }
}

function printTable(results) {
  const rows = [
    ["files", "bytes", "wall s", "files/s", "MB/s", "send RSS MiB", "recv RSS MiB", "ckpt peak KiB"],
  ]
  for (const r of results) {
    const seconds = r.wallMs / 1000
    rows.push([
      String(r.count),
      String(r.bytes),
      seconds.toFixed(2),
      (r.count / seconds).toFixed(0),
      (r.bytes / 1e6 / seconds).toFixed(2),
      (r.senderRss / MiB).toFixed(0),
      (r.receiverRss / MiB).toFixed(0),
      (r.checkpointPeak / 1024).toFixed(0),
    ])
  }
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)))
  for (const r of rows)
    console.log(
      r.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join("  "),
    )
}

/** Sends each tree `runs` times and prints one row per run. */
export async function benchTrees(counts, runs) {
  const signal = await startSignal()
  const results = []
  try {
    for (const count of counts) {
      const source = await sourceTree(count)
      for (let i = 1; i <= runs; i++) {
        process.stderr.write(`tree of ${count} files, run ${i}/${runs}...\n`)
        results.push(await sendTree(signal.url, source))
      }
    }
  } finally {
    await stop(signal.server)
  }
  printTable(results)
}

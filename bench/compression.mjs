// `send --compress` measured: random bytes and generated log text, each with `--compress none` and `auto`,
// on loopback and through a rate cap, with the bytes that went on the wire and the ratio.
//
//   npm run bench -- --compression [--size 1GiB] [--cap-mbit 100] [--runs 1]
//
// The cap is the sender's own `--limit-rate`, which counts wire bytes (after compression) as a link of
// that rate would; it needs no root, unlike wanlink.py. Wall time runs from the receiver's start to its
// exit (setup included, as in the other benches), so small sizes understate both ratios.
import { createHash } from "node:crypto"
import { createReadStream, createWriteStream } from "node:fs"
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises"
import { basename, join } from "node:path"
import { performance } from "node:perf_hooks"
import { pipeline } from "node:stream/promises"
import { parseArgs } from "node:util"
import {
  benchDir,
  expectSuccess,
  MiB,
  root,
  runDirs,
  startSignal,
  start,
  stop,
  withTimeout,
} from "./support.mjs"
import { parseSize, sourceFile } from "./transfers.mjs"

/** Generated log lines: they shrink about 9 times at zstd level 1, as real logs often do. */
async function textFile(bytes) {
  const file = join(benchDir, `text-${bytes}.log`)
  const hashFile = `${file}.sha256`
  const done = await Promise.all([stat(file), readFile(hashFile, "utf8")]).catch(() => undefined)
  if (done?.[0].size === bytes) return { file, bytes, hash: done[1].trim() }
  process.stderr.write(`generating ${bytes} bytes of log text in ${file}\n`)
  await mkdir(benchDir, { recursive: true })
  const hash = createHash("sha256")
  const partial = `${file}.${process.pid}.tmp`
  await pipeline(async function* () {
    let line = 0
    for (let written = 0; written < bytes;) {
      const lines = []
      for (let i = 0; i < 10_000; i++, line++)
        lines.push(
          `2026-12-07T${String(line % 24).padStart(2, "0")}:${String(line % 60).padStart(2, "0")}:00.${line % 1000}Z ` +
            `INFO request id=${(line * 7919) % 100_000} path=/api/v1/items/${line % 500} ` +
            `status=${[200, 200, 404, 500][line % 4]} took=${line % 97}ms user=u${line % 313}\n`,
        )
      const block = Buffer.from(lines.join("")).subarray(0, bytes - written)
      hash.update(block)
      written += block.length
      yield block
    }
  }, createWriteStream(partial))
  const digest = hash.digest("hex")
  await writeFile(hashFile, digest)
  await rename(partial, file)
  return { file, bytes, hash: digest }
}

/** One transfer with the real CLI; the sender's summary line gives the ratio of file to wire bytes. */
async function transfer({ source, signal, sendFlags, timeoutMs }) {
  const dir = await mkdtemp(join(benchDir, "run-"))
  runDirs.add(dir)
  const bin = join(root, "bin/p2pal")
  const common = ["--stun", "", "--server", signal.url]
  let sender
  let receiver
  try {
    // Not quiet: the summary is what tells the wire bytes. The code comes on stderr then.
    sender = start("p2pal send", bin, ["send", ...sendFlags, ...common, source.file])
    let senderErr = ""
    sender.child.stderr.on("data", (text) => (senderErr += text))
    const code = await withTimeout(
      new Promise((resolve) => {
        const look = () => {
          const match = /Join code: (\S+)/.exec(senderErr)
          if (match) resolve(match[1])
          else setTimeout(look, 20)
        }
        look()
      }),
      30_000,
      "p2pal send printed no join code",
    )
    const startedAt = performance.now()
    receiver = start("p2pal recv", bin, ["recv", "-y", "-q", ...common, "--out", join(dir, "out"), code])
    const finished = await expectSuccess(receiver, timeoutMs)
    await expectSuccess(sender, 30_000)
    const received = createHash("sha256")
    await pipeline(createReadStream(join(dir, "out", basename(source.file))), received)
    if (received.digest("hex") !== source.hash) throw new Error(`the received copy of ${source.file} differs`)
    const ratio = Number(/on the wire \(ratio (\d+\.\d+)\)/.exec(senderErr)?.[1] ?? "1")
    return {
      wallMs: finished.at - startedAt,
      ratio,
      senderRss: sender.peakRss,
      receiverRss: receiver.peakRss,
    }
  } finally {
    await Promise.all([sender, receiver].filter(Boolean).map(stop))
    await rm(dir, { recursive: true, force: true })
    runDirs.delete(dir)
  }
}

const pad = (rows) => {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => String(r[col]).length)))
  for (const r of rows)
    console.log(
      r
        .map((cell, col) => (col < 3 ? String(cell).padEnd(widths[col]) : String(cell).padStart(widths[col])))
        .join("  "),
    )
}

export async function benchCompression(args) {
  const { values } = parseArgs({
    args,
    options: {
      compression: { type: "boolean" },
      size: { type: "string", default: "1GiB" },
      "cap-mbit": { type: "string", default: "100" },
      runs: { type: "string", default: "1" },
    },
  })
  const bytes = parseSize(values.size)
  const capMbit = Number(values["cap-mbit"])
  const runs = Number(values.runs)
  if (bytes === undefined || !(capMbit > 0) || !Number.isInteger(runs) || runs < 1) {
    process.stderr.write("usage: npm run bench -- --compression [--size 1GiB] [--cap-mbit 100] [--runs 1]\n")
    process.exit(2)
  }
  // --limit-rate takes bytes per second; a link's Mbit/s are decimal.
  const cap = `${Math.floor((capMbit * 1e6) / 8)}`
  // At the cap, none takes bytes / rate; anything slower than a fifth of that has stalled.
  const timeoutMs = 60_000 + Math.max(bytes / 5_000, ((bytes * 8) / (capMbit * 1e6)) * 5_000)
  const signal = await startSignal()
  const results = []
  try {
    const sources = { random: await sourceFile(bytes), text: await textFile(bytes) }
    for (let run = 1; run <= runs; run++)
      for (const data of ["random", "text"])
        for (const link of ["loopback", `${capMbit} Mbit/s`])
          for (const compress of ["none", "auto"]) {
            process.stderr.write(`${data}, ${link}, --compress ${compress}, run ${run}/${runs}...\n`)
            const sendFlags = ["--compress", compress, ...(link === "loopback" ? [] : ["--limit-rate", cap])]
            results.push({
              data,
              link,
              compress,
              ...(await transfer({ source: sources[data], signal, sendFlags, timeoutMs })),
            })
          }
  } finally {
    await stop(signal.server)
  }
  const best = (data, link, compress) =>
    results
      .filter((r) => r.data === data && r.link === link && r.compress === compress)
      .reduce((a, b) => (a.wallMs <= b.wallMs ? a : b))
  const rows = [
    [
      "data",
      "link",
      "compress",
      "bytes",
      "wall s",
      "MB/s",
      "wire bytes",
      "ratio",
      "vs none",
      "send RSS MiB",
      "recv RSS MiB",
    ],
  ]
  for (const data of ["random", "text"])
    for (const link of ["loopback", `${capMbit} Mbit/s`])
      for (const compress of ["none", "auto"]) {
        const r = best(data, link, compress)
        const none = best(data, link, "none")
        rows.push([
          data,
          link,
          compress,
          bytes,
          (r.wallMs / 1000).toFixed(2),
          (bytes / 1e6 / (r.wallMs / 1000)).toFixed(1),
          Math.round(bytes / r.ratio),
          r.ratio.toFixed(2),
          (none.wallMs / r.wallMs).toFixed(2),
          (r.senderRss / MiB).toFixed(0),
          (r.receiverRss / MiB).toFixed(0),
        ])
      }
  pad(rows)
}

// Loopback throughput of p2pal against a bare node-datachannel pair (the stack's ceiling), in one run on
// one machine, as DESIGN.md section 7 asks. Prints one table row per run and the best run of each mode.
//
//   npm run bench -- [--size 1GiB] [--runs N] [--only raw|p2pal] [--encrypt]
//   npm run bench -- --tree 10000,100000 [--runs N]     (trees of small files instead: see tree.mjs)
//   npm run bench -- --link [--rtt-ms 50 --loss 0.5%]   (on a delayed, lossy link instead: see link.mjs)
//   npm run bench -- --compression [--size 1GiB]        (--compress none vs auto: see compression.mjs)
//
// How each mode is timed (wall time, 1st byte, 1st MiB): see transfers.mjs.
import { parseArgs } from "node:util"
import { MiB, startSignal, stop } from "./support.mjs"
import { benchTrees, Folders } from "./tree.mjs"
import { benchLink } from "./link.mjs"
import { benchCompression } from "./compression.mjs"
import { parseSize, runP2pal, runRaw, sourceFile } from "./transfers.mjs"

const options = {
  size: { type: "string", default: "1GiB" },
  runs: { type: "string", default: "1" },
  only: { type: "string" },
  // Adds a third mode per round, p2pal-enc: `send --encrypt` (AES-256-GCM over every chunk).
  encrypt: { type: "boolean", default: false },
  // File counts of small-file trees to send instead of one big file.
  tree: { type: "string" },
}

function usage(message) {
  process.stderr.write(
    `${message}\nusage: npm run bench -- [--size 1GiB] [--runs N] [--only raw|p2pal] [--encrypt]\n       npm run bench -- --tree 10000,100000 [--runs N]\n       npm run bench -- --link [--rtt-ms 50] [--loss 0.5%] [--rate-mbit 0] [--size 32MiB] [--runs N] (see bench/link.mjs)\n`,
  )
  process.exit(2)
}

function printTable(results, bytes) {
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

async function benchBytes(flags) {
  const bytes =
    parseSize(flags.size) ??
    usage(`--size takes bytes or a KiB/MiB/GiB amount (e.g. 256MiB), got ${flags.size}`)
  const runs = Number(flags.runs)
  // Generous enough for a slow machine (5 MB/s) yet bounded, so a stalled transfer fails instead of hanging.
  const timeoutMs = 60_000 + bytes / 5_000
  const results = []
  // The server first: it fails fast when p2pal is not built, before a large file is generated.
  const signal = flags.only === "raw" ? undefined : await startSignal()
  try {
    const source = signal === undefined ? undefined : await sourceFile(bytes)
    const p2pal = { source, timeoutMs, senderServer: signal?.url }
    // Rounds alternate raw and p2pal, so a noisy neighbour on this machine hits both alike.
    for (let i = 1; i <= runs; i++) {
      if (flags.only !== "p2pal") {
        process.stderr.write(`raw run ${i}/${runs}...\n`)
        results.push({ mode: "raw", round: i, ...(await runRaw({ bytes, timeoutMs })) })
      }
      if (signal !== undefined) {
        process.stderr.write(`p2pal run ${i}/${runs}...\n`)
        results.push({ mode: "p2pal", round: i, ...(await runP2pal({ ...p2pal, sendFlags: [] })) })
      }
      if (signal !== undefined && flags.encrypt) {
        process.stderr.write(`p2pal --encrypt run ${i}/${runs}...\n`)
        results.push({
          mode: "p2pal-enc",
          round: i,
          ...(await runP2pal({ ...p2pal, sendFlags: ["--encrypt"] })),
        })
      }
    }
  } finally {
    if (signal !== undefined) await stop(signal.server)
  }
  printTable(results, bytes)
}

function bench(args) {
  // The link and compression benches have flags of their own.
  if (args.includes("--link")) return benchLink(args)
  if (args.includes("--compression")) return benchCompression(args)
  const { values: flags } = parseArgs({ args, options })
  const runs = Number(flags.runs)
  if (!Number.isInteger(runs) || runs < 1) usage(`--runs must be a positive integer, got ${flags.runs}`)
  if (flags.only !== undefined && flags.only !== "raw" && flags.only !== "p2pal") {
    usage(`--only must be raw or p2pal, got ${flags.only}`)
  }
  const treeCounts = flags.tree?.split(",").map(Number)
  if (treeCounts?.some((n) => !Number.isInteger(n) || n < Folders))
    usage(`--tree takes file counts of at least ${Folders}, comma-separated, got ${flags.tree}`)

  return treeCounts === undefined ? benchBytes(flags) : benchTrees(treeCounts, runs)
}

bench(process.argv.slice(2)).catch((error) => {
  process.stderr.write(`bench failed: ${error.message}\n`)
  process.exit(1)
})

// p2pal against plain TCP and the bare node-datachannel pair on a link with delay, loss and a rate cap,
// the same file in interleaved rounds (tcp, raw, p2pal, tcp, ...). Root only: it builds network
// namespaces. Run by `npm run bench -- --link`:
//
//   npm run bench -- --link [--rtt-ms 50] [--loss 0.5%] [--rate-mbit 0] [--queue-ms 100]
//                           [--size 32MiB] [--runs N] [--timeout 120]
//
// Without --rtt-ms, --loss or --rate-mbit it runs the default profiles (below), each with its own file
// size unless --size is given. Three namespaces:
// `snd` and `rcv` are joined only by test/support/wanlink.py, a user-space forwarder (this kernel has no
// netem) that delays each packet by half the RTT each way, drops it at random with the loss probability,
// and, given a rate, sends it through a tail-drop queue of --queue-ms. `sig` runs the signal app and has a
// veth to each of them without forwarding between the two: signaling is not delayed, so p2pal's first
// byte measures its own setup over the link, not an HTTP round trip over it; no peer can reach the other
// but over the link.
//
// Modes, each timed as in transfers.mjs (wall time from the receiver's start to its exit):
//   tcp    tcp-peer.mjs: one TCP connection, file to file on the disk, verified.
//   raw    raw-peer.mjs: the bare node-datachannel pair, memory to memory, no ICE servers.
//   p2pal  bin/p2pal send in snd, recv in rcv, --stun '', verified.
// A run still going after --timeout seconds is reported as "did not finish" and counts as 0 in medians;
// so is one that failed, after its error (and the bench then exits with 1).
import { join } from "node:path"
import { parseArgs } from "node:util"
import { MiB, namespaces, root, start, startSignal, stop, TimeoutError, waitForLine } from "./support.mjs"
import { parseSize, runP2pal, runRaw, runTcp, sourceFile } from "./transfers.mjs"

// The table (issue 13): what a user sees across a continent, the same with some loss, and
// across the world, with files big enough for p2pal to have added its lanes (Stripes) and run on them a
// while. The bare pair on the lossy link gets ~3 Mbit/s and does not finish its file in the timeout.
const defaultProfiles = [
  { rttMs: 50, loss: 0, rateMbit: 0, size: 256 * MiB },
  { rttMs: 50, loss: 0.005, rateMbit: 0, size: 64 * MiB },
  { rttMs: 200, loss: 0, rateMbit: 0, size: 64 * MiB },
]
const modes = ["tcp", "raw", "p2pal"]
const forwarder = join(root, "test/support/wanlink.py")
// The link's ends (snd is .1, rcv .2), and each peer's veth to sig (sig is .1 on both).
const linkPrefix = "10.203.0"
const sigNet = { snd: "10.204.1", rcv: "10.204.2" }

const usageText =
  "usage: npm run bench -- --link [--rtt-ms 50] [--loss 0.5%] [--rate-mbit 0] [--queue-ms 100] [--size 32MiB] [--runs N] [--timeout 120]\n"

function usage(message) {
  process.stderr.write(`${message}\n${usageText}`)
  process.exit(2)
}

function parseFlags(args) {
  const { values } = parseArgs({
    args,
    options: {
      link: { type: "boolean" },
      "rtt-ms": { type: "string" },
      loss: { type: "string" },
      "rate-mbit": { type: "string" },
      "queue-ms": { type: "string", default: "100" },
      size: { type: "string" },
      runs: { type: "string", default: "1" },
      timeout: { type: "string", default: "120" },
    },
  })
  const number = (name, text, min) => {
    const value = Number(text)
    if (text === "" || !Number.isFinite(value) || value < min) usage(`--${name} must be a number >= ${min}`)
    return value
  }
  // "0.5%" or 0.005.
  const loss = values.loss?.endsWith("%") ? number("loss", values.loss.slice(0, -1), 0) / 100 : values.loss
  const custom = values["rtt-ms"] !== undefined || loss !== undefined || values["rate-mbit"] !== undefined
  const size =
    values.size === undefined
      ? undefined
      : (parseSize(values.size) ?? usage(`--size takes bytes or a KiB/MiB/GiB amount, got ${values.size}`))
  const profiles = (
    custom
      ? [
          {
            rttMs: number("rtt-ms", values["rtt-ms"] ?? "50", 0),
            loss: number("loss", String(loss ?? 0), 0),
            rateMbit: number("rate-mbit", values["rate-mbit"] ?? "0", 0),
            size: 32 * MiB,
          },
        ]
      : defaultProfiles
  ).map((profile) => ({ ...profile, size: size ?? profile.size }))
  if (profiles.some((p) => p.loss >= 1)) usage("--loss is a fraction below 1 (0.005) or a percentage (0.5%)")
  const runs = number("runs", values.runs, 1)
  if (!Number.isInteger(runs)) usage("--runs must be a whole number")
  return {
    profiles,
    runs,
    queueMs: number("queue-ms", values["queue-ms"], 0),
    timeoutMs: number("timeout", values.timeout, 1) * 1000,
  }
}

const ip = async (...args) => {
  const proc = start("ip", "ip", args)
  const result = await proc.exited
  if (result.code !== 0) throw new Error(`ip ${args.join(" ")} failed: ${proc.stderr.trim()}`)
}

/** The namespaces snd, rcv and sig, with sig's veths; the link between snd and rcv comes per run. */
async function createNamespaces() {
  const prefix = `p2pal-link${process.pid}`
  const ns = { snd: `${prefix}-snd`, rcv: `${prefix}-rcv`, sig: `${prefix}-sig` }
  for (const name of Object.values(ns)) {
    await ip("netns", "add", name)
    namespaces.add(name)
    await ip("-n", name, "link", "set", "lo", "up")
  }
  for (const peer of ["snd", "rcv"]) {
    // Made inside the namespaces, so their names cannot clash with anything else on the machine.
    await ip("-n", ns.sig, "link", "add", peer, "type", "veth", "peer", "name", "sig", "netns", ns[peer])
    for (const [where, dev, host] of [
      [ns.sig, peer, "1"],
      [ns[peer], "sig", "2"],
    ]) {
      // No IPv6 address, so ICE sees no candidate that leads nowhere.
      await ip("-n", where, "link", "set", dev, "addrgenmode", "none")
      await ip("-n", where, "addr", "add", `${sigNet[peer]}.${host}/24`, "dev", dev)
      await ip("-n", where, "link", "set", dev, "up")
    }
  }
  return ns
}

async function deleteNamespaces(ns) {
  for (const name of Object.values(ns)) {
    await ip("netns", "del", name)
    namespaces.delete(name)
  }
}

/** The forwarder between snd and rcv for one run: a fresh queue, and its drop counts for that run. */
async function startLink(ns, profile, queueMs) {
  const id = process.pid % 100_000
  const link = start("wanlink", "python3", [
    ...[forwarder, ns.snd, ns.rcv, "--dev-a", `wl${id}s`, "--dev-b", `wl${id}r`],
    ...["--delay-ms", String(profile.rttMs / 2), "--loss", String(profile.loss)],
    ...["--rate-mbit", String(profile.rateMbit), "--queue-ms", String(queueMs), "--prefix", linkPrefix],
  ])
  await waitForLine(link, (line) => (line.startsWith("wanlink up") ? true : undefined), 10_000, "up")
  return link
}

/**
 * One run of `mode`: its figures, or `{ dnf: true }` when it did not finish in time or failed (said on
 * stderr): a tool that breaks on a bad link is a result here, not a reason to stop the bench.
 */
async function runMode(mode, { ns, signal, source, timeoutMs, profile, queueMs }) {
  const link = await startLink(ns, profile, queueMs)
  const sides = { senderNs: ns.snd, receiverNs: ns.rcv, timeoutMs }
  try {
    if (mode === "tcp") return await runTcp({ ...sides, source, receiverAddress: `${linkPrefix}.2` })
    if (mode === "raw") return await runRaw({ ...sides, bytes: source.bytes })
    return await runP2pal({ ...sides, source, senderServer: signal.snd, receiverServer: signal.rcv })
  } catch (error) {
    if (!(error instanceof TimeoutError)) {
      process.stderr.write(`  ${mode} failed: ${error.message}\n`)
      process.exitCode = 1
    }
    return { dnf: true, failed: !(error instanceof TimeoutError) }
  } finally {
    await stop(link)
    const drops = /^wanlink down: (.*)$/m.exec(link.stderr)?.[1]
    if (drops) process.stderr.write(`  link: ${drops}\n`)
  }
}

const describe = (profile) =>
  `${profile.rttMs} ms RTT, ${+(profile.loss * 100).toFixed(3)} % loss` +
  (profile.rateMbit > 0 ? `, ${profile.rateMbit} Mbit/s` : "")
const mbits = (bytes, r) => (r.dnf ? 0 : (bytes * 8) / 1e6 / (r.wallMs / 1000))
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
const show = (value) => (value === 0 ? "dnf" : value.toFixed(value < 10 ? 1 : 0))

function printTables(results, { runs, timeoutMs }) {
  const table = (rows) => {
    const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)))
    for (const r of rows)
      console.log(
        r
          .map((cell, col) => cell.padEnd(widths[col]))
          .join("  ")
          .trimEnd(),
      )
  }
  const perRun = [
    ["link", "file MiB", "mode", "run", "Mbit/s", "1st byte ms", "send RSS MiB", "recv RSS MiB"],
  ]
  for (const r of results) {
    perRun.push([
      describe(r.profile),
      String(r.bytes / MiB),
      r.mode,
      String(r.round),
      r.failed ? "failed" : r.dnf ? `did not finish in ${timeoutMs / 1000} s` : show(mbits(r.bytes, r)),
      r.dnf || r.firstByteMs === undefined ? "-" : r.firstByteMs.toFixed(0),
      r.dnf ? "-" : (r.senderRss / MiB).toFixed(0),
      r.dnf ? "-" : (r.receiverRss / MiB).toFixed(0),
    ])
  }
  table(perRun)
  console.log()
  // The README's table: medians over the rounds (a run that did not finish counts as 0), the range when
  // there are several, the ratios of the medians, and p2pal's first byte and peak RSS.
  console.log(
    `Medians of ${runs} round(s); tcp is file to file, raw memory to memory, p2pal file to file; ` +
      `signaling not over the link; "dnf": did not finish in ${timeoutMs / 1000} s, or failed.`,
  )
  const summary = [
    [
      "link",
      "file",
      "TCP Mbit/s",
      "raw Mbit/s",
      "p2pal Mbit/s",
      "p2pal/TCP",
      "p2pal/raw",
      "p2pal 1st byte ms",
      "p2pal RSS send/recv MiB",
    ],
  ]
  const profiles = [...new Set(results.map((r) => r.profile))]
  for (const profile of profiles) {
    const of = (mode) => results.filter((r) => r.profile === profile && r.mode === mode)
    const speeds = Object.fromEntries(modes.map((m) => [m, of(m).map((r) => mbits(r.bytes, r))]))
    const cell = (mode) => {
      const values = speeds[mode]
      const range = values.length > 1 ? ` (${show(Math.min(...values))}-${show(Math.max(...values))})` : ""
      return show(median(values)) + range
    }
    const ratio = (mode) => {
      const [p, m] = [median(speeds.p2pal), median(speeds[mode])]
      return p > 0 && m > 0 ? (p / m).toFixed(2) : "-"
    }
    const done = of("p2pal").filter((r) => !r.dnf)
    const firstBytes = done.map((r) => r.firstByteMs).filter((ms) => ms !== undefined)
    const peak = (side) => (Math.max(...done.map((r) => r[side])) / MiB).toFixed(0)
    summary.push([
      describe(profile),
      `${of("tcp")[0].bytes / MiB} MiB`,
      cell("tcp"),
      cell("raw"),
      cell("p2pal"),
      ratio("tcp"),
      ratio("raw"),
      firstBytes.length ? median(firstBytes).toFixed(0) : "-",
      done.length ? `${peak("senderRss")}/${peak("receiverRss")}` : "-",
    ])
  }
  const widths = summary[0].map((_, col) => Math.max(...summary.map((r) => r[col].length)))
  const line = (cells) => `| ${cells.map((c, col) => c.padEnd(widths[col])).join(" | ")} |`
  console.log(line(summary[0]))
  console.log(line(widths.map((w) => "-".repeat(w))))
  for (const r of summary.slice(1)) console.log(line(r))
}

export async function benchLink(args) {
  const flags = parseFlags(args)
  if (process.getuid?.() !== 0) {
    console.log("link bench skipped: it needs root (network namespaces and TUN devices); run it as root")
    return
  }
  const ns = await createNamespaces()
  const results = []
  let server
  try {
    server = await startSignal({ ns: ns.sig, host: "0.0.0.0" })
    const port = new URL(server.url).port
    const signal = { snd: `http://${sigNet.snd}.1:${port}`, rcv: `http://${sigNet.rcv}.1:${port}` }
    for (const profile of flags.profiles) {
      const source = await sourceFile(profile.size)
      // Rounds interleave the modes, so a noisy neighbour on this machine hits them alike.
      for (let round = 1; round <= flags.runs; round++) {
        for (const mode of modes) {
          process.stderr.write(`${describe(profile)}: ${mode} run ${round}/${flags.runs}...\n`)
          const run = { ns, signal, source, timeoutMs: flags.timeoutMs, profile, queueMs: flags.queueMs }
          const result = await runMode(mode, run)
          results.push({ profile, mode, round, bytes: source.bytes, ...result })
        }
      }
    }
  } finally {
    if (server !== undefined) await stop(server.server)
    await deleteNamespaces(ns)
  }
  printTables(results, flags)
}

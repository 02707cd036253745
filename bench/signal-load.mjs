// Load on one signal app instance: how fast it creates and joins transfers, and what a waiting transfer
// and an open WebSocket cost it in memory. Runs the built app (what bin/p2pal-signal runs) with its
// in-memory store, then with --redis against a redis-server started here on a free port, and prints one
// row per mode in each of two tables: throughput, then bytes per waiting transfer and per open socket.
//
//   npm run bench:signal -- [--transfers 10000] [--sockets 2000] [--joins 2000] [--only memory|redis]
//                           [--heap-snapshots DIR] [--signal FILE]
//
// --heap-snapshots writes a V8 heap snapshot of the app after each phase (for bench/heap-diff.mjs);
// --signal runs another build of the app (a copy of apps/signal/dist/bundle/main.js), to compare two
// builds on the same machine in one sitting.
//
// Joins go to the first transfers created, whose senders hold the sockets: the usual order, a sender
// waiting on its socket when the receiver joins. Fewer joins than transfers keep a run near two minutes
// on a small machine, while every join still looks up a nameplate among all the waiting transfers.
//
// Memory is measured two ways, each as the difference across a phase divided by its count. "RSS" is the
// process's resident set (VmRSS), garbage not collected yet included: an upper bound. "Retained" is what
// is left after a full garbage collection, which the bench asks for through the V8 inspector (the app runs
// with NODE_OPTIONS=--inspect on a loopback port picked by the kernel; the product has no such hook):
// the V8 heap in use, the memory outside it that JS objects hold (Buffers, ws and ioredis internals), and
// the resident set after that collection. With Redis the transfers live in redis-server, measured by its
// resident set and by INFO memory's used_memory (what Redis counts its data as).
import { spawn, spawnSync } from "node:child_process"
import { accessSync, constants, createWriteStream, mkdirSync, readFileSync } from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import { delimiter, join } from "node:path"
import { performance } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import WebSocket from "ws"

const root = fileURLToPath(new URL("..", import.meta.url))
/** Requests or socket handshakes in flight at once, as many busy clients would keep. */
const InFlight = 64
/** Long enough that no transfer expires while the bench runs. */
const TtlSeconds = 900
/** Transfers created before measuring, so the baseline includes compiled code and warmed pools. */
const WarmUp = 256
/** File descriptors this process and the app keep beside the sockets (stdio, listeners, Redis). */
const FdReserve = 256

const { values: flags } = parseArgs({
  options: {
    transfers: { type: "string", default: "10000" },
    sockets: { type: "string", default: "2000" },
    joins: { type: "string", default: "2000" },
    only: { type: "string" },
    "heap-snapshots": { type: "string" },
    signal: { type: "string", default: join(root, "apps/signal/dist/bundle/main.js") },
  },
})
const transfers = positive("--transfers", flags.transfers)
const wantedSockets = positive("--sockets", flags.sockets)
const wantedJoins = positive("--joins", flags.joins)
if (flags.only !== undefined && flags.only !== "memory" && flags.only !== "redis") {
  usage(`--only must be memory or redis, got ${flags.only}`)
}

function usage(message) {
  process.stderr.write(
    `${message}\nusage: npm run bench:signal -- [--transfers 10000] [--sockets 2000] [--joins 2000] [--only memory|redis] [--heap-snapshots DIR] [--signal FILE]\n`,
  )
  process.exit(2)
}

function positive(name, text) {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 1) usage(`${name} must be a positive integer, got ${text}`)
  return value
}

// Every child we start, so a failure or Ctrl+C leaves none behind.
const children = new Set()
process.on("exit", () => children.forEach((proc) => proc.child.kill("SIGKILL")))
process.on("SIGINT", () => process.exit(130))
process.on("SIGTERM", () => process.exit(143))

function start(name, command, args, env = process.env) {
  const child = spawn(command, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] })
  const proc = { child, name, stderr: "" }
  children.add(proc)
  child.stderr.setEncoding("utf8").on("data", (text) => (proc.stderr = (proc.stderr + text).slice(-2000)))
  proc.exited = new Promise((resolve) => {
    child.once("error", (error) => resolve({ how: error.message }))
    child.once("exit", (code, signal) => resolve({ how: signal ? `signal ${signal}` : `code ${code}` }))
  }).then((result) => {
    children.delete(proc)
    return result
  })
  proc.lines = createInterface({ input: child.stdout })
  return proc
}

async function stop(proc) {
  if (!children.has(proc)) return
  proc.child.kill("SIGTERM")
  const timer = setTimeout(() => proc.child.kill("SIGKILL"), 5000)
  await proc.exited
  clearTimeout(timer)
}

/** Resident set of a process we started, in bytes. */
function rss(proc) {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.child.pid}/status`, "utf8"))
  return Number(match[1]) * 1024
}

/** The soft limit on open files, which caps how many sockets each side can hold. */
function openFileLimit() {
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"))
  return match?.[1] === "unlimited" ? Infinity : Number(match?.[1] ?? 1024)
}

function onPath(name) {
  return (process.env.PATH ?? "")
    .split(delimiter)
    .map((dir) => join(dir, name))
    .find((file) => {
      try {
        accessSync(file, constants.X_OK)
        return true
      } catch {
        return false
      }
    })
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** Whether redis-server on `port` answers (redis-cli comes with it in Debian's redis-tools). */
function pong(port) {
  const answer = spawnSync("redis-cli", ["-p", String(port), "ping"], { encoding: "utf8", timeout: 1000 })
  return answer.stdout?.trim() === "PONG"
}

async function startRedis(binary) {
  const port = await freePort()
  const redis = start("redis-server", binary, [
    ...["--port", String(port), "--bind", "127.0.0.1"],
    ...["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
  ])
  const deadline = performance.now() + 10_000
  while (!pong(port)) {
    if (!children.has(redis)) throw new Error(`redis-server exited: ${redis.stderr}`)
    if (performance.now() > deadline) throw new Error("redis-server did not answer PING within 10 s")
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { redis: Object.assign(redis, { port }), url: `redis://127.0.0.1:${port}` }
}

/** What redis-server counts its data as (INFO memory's used_memory), in bytes. */
function redisUsedMemory(redis) {
  const info = spawnSync("redis-cli", ["-p", String(redis.port), "info", "memory"], {
    encoding: "utf8",
    timeout: 5000,
  })
  const match = /^used_memory:(\d+)/m.exec(info.stdout ?? "")
  if (!match) throw new Error(`redis-cli info memory answered: ${info.stdout}${info.stderr}`)
  return Number(match[1])
}

/**
 * The app's rate limits and caps would refuse a bench from one address: raised past its load, if it has
 * them (bench/signal-flood.mjs is the one that meets them); its metrics listener takes a free port.
 */
function limitFlags(help) {
  const max = String(2 * (transfers + WarmUp + wantedSockets))
  return [
    "--limit-creates",
    "--limit-joins",
    "--limit-failed-joins",
    "--max-transfers",
    "--max-websockets",
    "--max-websockets-per-client",
  ]
    .filter((flag) => help.includes(flag))
    .flatMap((flag) => [flag, max])
    .concat(help.includes("--metrics-port") ? ["--metrics-port", "0"] : [])
}

async function helpText() {
  const proc = start("p2pal-signal --help", process.execPath, [flags.signal, "--help"])
  const lines = []
  proc.lines.on("line", (line) => lines.push(line))
  await proc.exited
  return lines.join("\n")
}

/**
 * Starts the app with its inspector on a loopback port; resolves with its URL and an inspector session,
 * or with the reason it did not start.
 */
async function startSignal(extraArgs) {
  const args = ["--port", "0", "--host", "127.0.0.1", ...extraArgs]
  const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --inspect=127.0.0.1:0` }
  const server = start("p2pal-signal", process.execPath, [flags.signal, ...args], env)
  const inspectorUrl = new Promise((resolve) =>
    server.child.stderr.on("data", () => {
      const url = /Debugger listening on (ws:\/\/\S+)/.exec(server.stderr)?.[1]
      if (url) resolve(url)
    }),
  )
  const listening = new Promise((resolve) =>
    server.lines.on("line", (line) => {
      const url = /^p2pal-signal listening on (http:\/\/\S+)/.exec(line)?.[1]
      if (url) resolve(url)
    }),
  ).then(async (url) => ({ server, url, inspector: await inspect(await inspectorUrl) }))
  const failed = server.exited.then(({ how }) => {
    const hint = /Cannot find module/.test(server.stderr) ? "\n(is it built? run `npm run build`)" : ""
    return { failure: `exited (${how}): ${server.stderr.trim().slice(-800)}${hint}` }
  })
  const timedOut = new Promise((resolve) =>
    setTimeout(() => resolve({ failure: "printed no listening line within 15 s" }), 15_000).unref(),
  )
  const result = await Promise.race([listening, failed, timedOut])
  if (result.failure) await stop(server)
  return result
}

/** A V8 inspector session: `send` calls a protocol method, `on` hears its events. */
async function inspect(url) {
  const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 0 })
  await new Promise((resolve, reject) => {
    socket.once("open", resolve)
    socket.once("error", reject)
  })
  const pending = new Map()
  const listeners = new Map()
  socket.on("message", (data) => {
    const { id, method, params, result, error } = JSON.parse(data)
    if (id === undefined) return listeners.get(method)?.(params)
    const call = pending.get(id)
    pending.delete(id)
    if (error) call.reject(new Error(`${call.method}: ${error.message}`))
    else call.resolve(result)
  })
  let lastId = 0
  return {
    send: (method, params = {}) =>
      new Promise((resolve, reject) => {
        pending.set(++lastId, { method, resolve, reject })
        socket.send(JSON.stringify({ id: lastId, method, params }))
      }),
    on: (method, listener) => listeners.set(method, listener),
  }
}

/**
 * The app's memory after a full collection: V8 heap in use, memory outside it held by JS objects, and
 * the resident set. The collection runs twice, so objects freed by the first one's finalizers go too.
 */
async function retained(inspector) {
  await inspector.send("HeapProfiler.collectGarbage")
  await inspector.send("HeapProfiler.collectGarbage")
  const { result } = await inspector.send("Runtime.evaluate", {
    expression: "JSON.stringify(process.memoryUsage())",
    returnByValue: true,
  })
  const { heapUsed, external, rss } = JSON.parse(result.value)
  return { heap: heapUsed, external, rss }
}

/** Writes a heap snapshot of the app to `file` (for DevTools' Memory tab or bench/heap-diff.mjs). */
async function heapSnapshot(inspector, file) {
  const out = createWriteStream(file)
  inspector.on("HeapProfiler.addHeapSnapshotChunk", ({ chunk }) => out.write(chunk))
  await inspector.send("HeapProfiler.takeHeapSnapshot", { reportProgress: false })
  await new Promise((resolve, reject) => out.end((error) => (error ? reject(error) : resolve())))
}

/** Runs `task(i)` for i in [0, count) with at most InFlight at once; returns requests per second. */
async function pool(count, task) {
  let next = 0
  const worker = async () => {
    while (next < count) await task(next++)
  }
  const startedAt = performance.now()
  await Promise.all(Array.from({ length: Math.min(InFlight, count) }, worker))
  return count / ((performance.now() - startedAt) / 1000)
}

/** Counts what went wrong in a phase and keeps the first one's description for the report. */
function failures(what) {
  const tally = { what, count: 0, first: undefined }
  tally.add = (detail) => {
    tally.count++
    tally.first ??= detail
  }
  return tally
}

// node:http rather than fetch: on a small machine the client shares the cores with the app, and fetch
// spent about twice the CPU per request here, which lowered the app's measured rate.
const agent = new http.Agent({ keepAlive: true, maxSockets: InFlight })

/** Resolves with the status and body text; a failed connection counts as status 0, never throws. */
function post(url, body) {
  const text = JSON.stringify(body)
  return new Promise((resolve) => {
    const request = http.request(
      url,
      {
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text) },
      },
      (response) => {
        let answer = ""
        response.setEncoding("utf8")
        response.on("data", (chunk) => (answer += chunk))
        response.on("end", () => resolve({ status: response.statusCode, text: answer }))
      },
    )
    request.on("error", (error) => resolve({ status: 0, text: error.message }))
    request.end(text)
  })
}

/**
 * Closes the agent's idle connections before a phase: after a pause longer than the app's keep-alive
 * timeout (5 s, as after the socket phase) the app may close one just as it is reused (ECONNRESET).
 */
function dropIdleConnections() {
  for (const sockets of Object.values(agent.freeSockets)) sockets.forEach((socket) => socket.destroy())
}

async function createTransfers(url, count, failed) {
  dropIdleConnections()
  const created = []
  const perSecond = await pool(count, async () => {
    const { status, text } = await post(`${url}/api/transfer`, { ttlSeconds: TtlSeconds })
    if (status === 201) created.push(JSON.parse(text))
    else failed.add(`${status} ${text}`)
  })
  return { created, perSecond }
}

function openSocket(url, token) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${url.replace(/^http/, "ws")}/api/ws?token=${encodeURIComponent(token)}`)
    socket.once("open", () => {
      socket.off("error", reject)
      // Held open until the phase ends; a later error only ends this socket.
      socket.on("error", () => {})
      resolve(socket)
    })
    // A refused upgrade arrives here too ("Unexpected server response: 401").
    socket.once("error", reject)
  })
}

/** CPU time the process has used (user + system), in clock ticks (1/100 s on Linux). */
function cpuTicks(proc) {
  const fields = readFileSync(`/proc/${proc.child.pid}/stat`, "utf8").split(") ")[1].split(" ")
  return Number(fields[11]) + Number(fields[12])
}

/** Resolves once the app has been idle for a quarter second (at most 10 s): the last requests are done. */
async function settled(app) {
  const deadline = performance.now() + 10_000
  for (let before = cpuTicks(app); performance.now() < deadline;) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    const now = cpuTicks(app)
    if (now - before <= 1) return
    before = now
  }
}

/**
 * The app's and Redis's memory at the end of a phase: the app's resident set as the phase left it, then
 * everything after a full collection (which is also where the next phase starts from).
 */
async function snapshot(app, inspector, redis, name) {
  await settled(app)
  const rssAsLeft = rss(app)
  const after = await retained(inspector)
  if (flags["heap-snapshots"] !== undefined) {
    mkdirSync(flags["heap-snapshots"], { recursive: true })
    await heapSnapshot(inspector, join(flags["heap-snapshots"], `${name}.heapsnapshot`))
  }
  return { rssAsLeft, ...after, redis: redis && { rss: rss(redis), used: redisUsedMemory(redis) } }
}

/** What a phase from `from` to `to` cost per item, for `count` items. */
function cost(from, to, count) {
  const per = (a, b) => (b - a) / Math.max(count, 1)
  return {
    rss: per(from.rss, to.rssAsLeft),
    retainedRss: per(from.rss, to.rss),
    heap: per(from.heap, to.heap),
    external: per(from.external, to.external),
    redisRss: to.redis && per(from.redis.rss, to.redis.rss),
    redisUsed: to.redis && per(from.redis.used, to.redis.used),
  }
}

async function measure(mode, { url, server: app, inspector }, redis) {
  const failedCreates = failures("failed creations")
  await createTransfers(url, WarmUp, failedCreates)

  const before = await snapshot(app, inspector, redis, `${mode}-0-warm`)
  const { created, perSecond: createsPerSecond } = await createTransfers(url, transfers, failedCreates)
  const afterCreates = await snapshot(app, inspector, redis, `${mode}-1-transfers`)

  const sockets = []
  const failedSockets = failures("failed sockets")
  const socketCount = Math.min(wantedSockets, created.length, openFileLimit() - FdReserve)
  if (socketCount < wantedSockets) {
    process.stderr.write(
      `${mode}: opening ${socketCount} sockets, not ${wantedSockets} (created transfers or \`ulimit -n\` ${openFileLimit()})\n`,
    )
  }
  // Sockets the app closes before the end are not failed requests, but they are not held either.
  const closedEarly = failures("sockets closed by the app")
  const opensPerSecond = await pool(socketCount, (i) =>
    openSocket(url, created[i].token).then(
      (socket) => {
        sockets.push(socket)
        socket.once("close", (code, reason) => closedEarly.add(`${code} ${reason}`))
      },
      (error) => failedSockets.add(error.message),
    ),
  )
  const afterSockets = await snapshot(app, inspector, redis, `${mode}-2-sockets`)
  const held = sockets.filter((socket) => socket.readyState === WebSocket.OPEN).length

  const failedJoins = failures("failed joins")
  const joins = Math.min(wantedJoins, created.length)
  dropIdleConnections()
  const joinsPerSecond = await pool(joins, async (i) => {
    const { status, text } = await post(`${url}/api/join`, { nameplate: created[i].nameplate })
    if (status !== 200) failedJoins.add(`${status} ${text}`)
  })
  sockets.forEach((socket) => {
    socket.removeAllListeners("close")
    socket.terminate()
  })

  const digits = created.map((c) => c.nameplate.length)
  const failed = [failedCreates, failedSockets, failedJoins]
  for (const { what, count, first } of [...failed, closedEarly]) {
    if (count > 0) process.stderr.write(`${mode}: ${count} ${what}, the first: ${first}\n`)
  }
  return {
    mode,
    created: created.length,
    createsPerSecond,
    perTransfer: cost(before, afterCreates, created.length),
    sockets: held,
    opensPerSecond,
    perSocket: cost(afterCreates, afterSockets, held),
    joins,
    joinsPerSecond,
    digits: digits.length === 0 ? "-" : `${Math.min(...digits)}-${Math.max(...digits)}`,
    failed: failed.reduce((sum, f) => sum + f.count, 0),
  }
}

async function runMode(mode, limits) {
  let redis
  try {
    const redisArgs = []
    if (mode === "redis") {
      const binary = onPath("redis-server")
      if (binary === undefined) {
        process.stderr.write("redis: skipped, no redis-server on the PATH (apt-get install redis-server)\n")
        return undefined
      }
      const started = await startRedis(binary)
      redis = started.redis
      redisArgs.push("--redis", started.url)
    }
    process.stderr.write(
      `${mode}: ${transfers} transfers, up to ${wantedSockets} sockets and ${wantedJoins} joins...\n`,
    )
    const signal = await startSignal([...redisArgs, ...limits])
    if (signal.failure) {
      process.stderr.write(`${mode}: p2pal-signal did not start: ${signal.failure}\n`)
      return undefined
    }
    try {
      return await measure(mode, signal, redis)
    } finally {
      await stop(signal.server)
    }
  } finally {
    if (redis) await stop(redis)
  }
}

function printTable(rows) {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)))
  for (const r of rows) {
    console.log(
      r.map((cell, col) => (col === 0 ? cell.padEnd(widths[col]) : cell.padStart(widths[col]))).join("  "),
    )
  }
}

function printResults(results) {
  printTable([
    [
      "store",
      "transfers",
      "creates/s",
      "sockets",
      "opens/s",
      "joins",
      "joins/s",
      "nameplate digits",
      "failed",
    ],
    ...results.map((r) => [
      r.mode,
      String(r.created),
      r.createsPerSecond.toFixed(0),
      String(r.sockets),
      r.opensPerSecond.toFixed(0),
      String(r.joins),
      r.joinsPerSecond.toFixed(0),
      r.digits,
      String(r.failed),
    ]),
  ])
  console.log("")
  const bytes = (value) => (value === undefined ? "-" : value.toFixed(0))
  printTable([
    ["store", "bytes per", "app RSS", "retained RSS", "heap", "external", "redis RSS", "redis used_memory"],
    ...results.flatMap((r) =>
      [
        ["waiting transfer", r.perTransfer],
        ["open socket", r.perSocket],
      ].map(([what, c]) => [
        r.mode,
        what,
        bytes(c.rss),
        bytes(c.retainedRss),
        bytes(c.heap),
        bytes(c.external),
        bytes(c.redisRss),
        bytes(c.redisUsed),
      ]),
    ),
  ])
}

async function main() {
  const limits = limitFlags(await helpText())
  const modes = flags.only === undefined ? ["memory", "redis"] : [flags.only]
  const results = []
  for (const mode of modes) {
    const result = await runMode(mode, limits)
    if (result) results.push(result)
  }
  agent.destroy()
  if (results.length === 0) throw new Error("no mode ran")
  printResults(results)
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error.message}\n`)
  process.exit(1)
})

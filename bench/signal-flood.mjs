// One signal app (the built one, in-memory store, its default caps and limits) flooded from many loopback
// addresses: Linux answers all of 127.0.0.0/8 on lo, so each flooding client binds its own 127.1.x.y and
// the app counts it as another client. Prints what the cap costs in memory and how honest clients on
// 127.0.0.1 fare while the flood runs.
//
//   npm run build && node bench/signal-flood.mjs [--addresses 400] [--seconds 5]
//
// Phase 1 fills the --max-transfers cap (10,000) with creates from the addresses, each until the app
// refuses it (429 past --limit-creates, 503 at the cap). Phase 2 floods for --seconds with creates, joins
// of unknown nameplates and WebSockets, 64 requests in flight, while an honest client asks /healthz and
// /readyz in a loop and joins a transfer it created before the flood, then relays a message through it.
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as http from "node:http"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import WebSocket from "ws"

const root = fileURLToPath(new URL("..", import.meta.url))
const InFlight = 64
const { values: flags } = parseArgs({
  options: { addresses: { type: "string", default: "400" }, seconds: { type: "string", default: "5" } },
})
const addresses = Array.from(
  { length: Number(flags.addresses) },
  (_, i) => `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`,
)
const seconds = Number(flags.seconds)

const app = spawn(join("bin/p2pal-signal"), ["--port", "0", "--host", "127.0.0.1", "--metrics-port", "0"], {
  stdio: ["ignore", "pipe", "ignore"],
})
function join(path) {
  return fileURLToPath(new URL(path, new URL("file://" + root)))
}
const { url, metricsUrl } = await new Promise((resolve, reject) => {
  let out = ""
  app.stdout.setEncoding("utf8").on("data", (d) => {
    out += d
    const url = /listening on (\S+)/.exec(out)?.[1]
    if (url) resolve({ url, metricsUrl: /metrics on (\S+)/.exec(out)[1] })
  })
  app.once("exit", () => reject(new Error("p2pal-signal exited; is it built (npm run build)?")))
})
const rssMiB = () =>
  Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${app.pid}/status`, "utf8"))[1]) / 1024

function request(method, route, body, source) {
  return new Promise((resolve) => {
    const began = performance.now()
    const req = http.request(
      new URL(route, url),
      { method, localAddress: source, agent: false, headers: { "content-type": "application/json" } },
      (res) => {
        let text = ""
        res.setEncoding("utf8").on("data", (d) => (text += d))
        res.on("end", () =>
          resolve({
            status: res.statusCode,
            retryAfter: res.headers["retry-after"],
            text,
            ms: performance.now() - began,
          }),
        )
      },
    )
    req.on("error", () => resolve({ status: 0, ms: performance.now() - began }))
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

function socket(token, source) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}/api/ws?token=${token}`, { localAddress: source })
    ws.once("open", () => resolve({ status: 101, ws }))
    ws.once("unexpected-response", (_, res) => {
      resolve({ status: res.statusCode, retryAfter: res.headers["retry-after"] })
      res.resume()
      ws.terminate()
    })
    ws.once("error", () => resolve({ status: 0 }))
  })
}

async function metric(series) {
  const text = await (await fetch(metricsUrl)).text()
  return Number(
    text
      .split("\n")
      .find((l) => l.startsWith(`${series} `))
      ?.split(" ")[1],
  )
}

const tally = (answers) =>
  Object.entries(answers.reduce((by, { status }) => ({ ...by, [status]: (by[status] ?? 0) + 1 }), {}))
    .map(([status, n]) => `${n}×${status}`)
    .join(", ")

const pct = (values, p) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]

const honestTransfer = JSON.parse(
  (await request("POST", "/api/transfer", { ttlSeconds: 900 }, "127.0.0.1")).text,
)
const sender = await socket(honestTransfer.token, "127.0.0.1")
const rssStart = rssMiB()

// Phase 1: fill the cap from many addresses, each until it is refused.
const tokens = new Map(addresses.map((a) => [a, []]))
const fill = []
let next = 0
await Promise.all(
  Array.from({ length: InFlight }, async () => {
    while (next < addresses.length) {
      const source = addresses[next++]
      for (;;) {
        const answer = await request("POST", "/api/transfer", { ttlSeconds: 900 }, source)
        fill.push(answer)
        if (answer.status !== 201) break
        tokens.get(source).push(JSON.parse(answer.text).token)
      }
    }
  }),
)
const held = await metric("p2pal_transfers_held")
const rssCap = rssMiB()
console.log(
  `fill: ${fill.length} creates from ${addresses.length} addresses (${tally(fill)}); ${held} transfers held; ` +
    `RSS ${rssStart.toFixed(0)} MiB before, ${rssCap.toFixed(0)} MiB at the cap ` +
    `(${(((rssCap - rssStart) * 1024) / held).toFixed(2)} KiB per transfer)`,
)

// Phase 2: flood, and watch the honest client.
const deadline = performance.now() + seconds * 1000
const flood = []
const open = []
const honest = []
let worker = 0
const flooding = Promise.all(
  Array.from({ length: InFlight }, async () => {
    const mine = worker++
    for (let round = 0; performance.now() < deadline; round++) {
      const source = addresses[(mine + round * InFlight) % addresses.length]
      flood.push(await request("POST", "/api/transfer", { ttlSeconds: 900 }, source))
      flood.push(
        await request(
          "POST",
          "/api/join",
          { nameplate: String(100000 + ((mine * 7919 + round) % 900000)) },
          source,
        ),
      )
      const token = tokens.get(source).pop()
      if (token !== undefined) {
        const opened = await socket(token, source)
        flood.push(opened)
        if (opened.ws) open.push(opened.ws)
      }
    }
  }),
)
const probing = (async () => {
  while (performance.now() < deadline) {
    honest.push(await request("GET", "/healthz", undefined, "127.0.0.1"))
    honest.push(await request("GET", "/readyz", undefined, "127.0.0.1"))
  }
})()
const honestJoin = await request("POST", "/api/join", { nameplate: honestTransfer.nameplate }, "127.0.0.1")
const receiver = await socket(JSON.parse(honestJoin.text).token, "127.0.0.1")
const relayed = await new Promise((resolve) => {
  const began = performance.now()
  sender.ws.on("message", (data) => {
    if (JSON.parse(data.toString())._tag === "signal") resolve(performance.now() - began)
  })
  receiver.ws.send(JSON.stringify({ _tag: "signal", data: "hello" }))
})
await Promise.all([flooding, probing])
const rssFlood = rssMiB()
const refused = flood.filter((a) => a.status === 429 || a.status === 503)
const ms = honest.map((a) => a.ms)
console.log(
  `flood: ${flood.length} requests in ${seconds} s from ${addresses.length} addresses (${tally(flood)}); ` +
    `${refused.filter((a) => Number(a.retryAfter) >= 1).length}/${refused.length} refusals with Retry-After; ` +
    `${open.length} flood sockets held (${await metric("p2pal_websockets_active")} open)`,
)
console.log(
  `honest: ${honest.filter((a) => a.status === 200).length}/${honest.length} /healthz and /readyz answered 200, ` +
    `p50 ${pct(ms, 0.5).toFixed(1)} ms, p99 ${pct(ms, 0.99).toFixed(1)} ms, max ${Math.max(...ms).toFixed(1)} ms; ` +
    `join ${honestJoin.status} in ${honestJoin.ms.toFixed(1)} ms, receiver socket ${receiver.status}, ` +
    `a message relayed in ${relayed.toFixed(1)} ms; RSS ${rssFlood.toFixed(0)} MiB`,
)
for (const ws of [...open, sender.ws, receiver.ws]) ws.terminate()
app.kill("SIGTERM")

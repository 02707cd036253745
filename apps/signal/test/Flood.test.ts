import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { bin, removeTempDirs, run, start, tempDir, waitFor } from "../../../test/support/Processes.js"
import { type Signal, startSignal } from "./harness.js"

/**
 * A flood of the signal app from many addresses, bounded in count and time, on loopback only: Linux
 * answers every 127.0.0.x on lo, so each flooding client binds its own source address and the app counts
 * it as another client. Honest clients stay on 127.0.0.1.
 */
const Flooders = 40
const floodAddress = (i: number) => `127.0.0.${i + 2}`
/** Enough that the flood outlasts the honest transfer on a fast machine too (past its limits, it is 429s). */
const MaxRounds = 200

interface Answer {
  readonly status: number
  readonly retryAfter: string | undefined
  readonly body: string
  readonly ms: number
}

const request = (
  signal: Signal,
  method: "GET" | "POST",
  route: string,
  body: unknown,
  source: string,
): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const began = performance.now()
    const req = http.request(
      new URL(route, signal.url),
      { method, localAddress: source, agent: false, headers: { "content-type": "application/json" } },
      (res) => {
        let text = ""
        res.setEncoding("utf8").on("data", (part: string) => (text += part))
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers["retry-after"],
            body: text,
            ms: performance.now() - began,
          }),
        )
      },
    )
    req.on("error", reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })

/** Opens a relay socket from `source`: "open", or the HTTP answer that refused the upgrade. */
const openSocket = (signal: Signal, token: string, source: string) =>
  new Promise<{ socket?: WebSocket; status: number; retryAfter: string | undefined }>((resolve) => {
    const url = new URL("/api/ws", signal.url)
    url.protocol = "ws:"
    url.searchParams.set("token", token)
    const socket = new WebSocket(url, { localAddress: source })
    socket.once("open", () => resolve({ socket, status: 101, retryAfter: undefined }))
    socket.once("unexpected-response", (_, res) => {
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"] })
      res.resume()
      socket.terminate()
    })
    socket.once("error", () => resolve({ status: 0, retryAfter: undefined }))
  })

/** A socket that sends part of a request (or nothing) and then nothing more: resolves with how long the app kept it open. */
const slowClient = (signal: Signal, source: string, partial: string) =>
  new Promise<number>((resolve) => {
    const { port, hostname } = new URL(signal.url)
    const began = performance.now()
    const socket = net.connect({ port: Number(port), host: hostname, localAddress: source }, () => {
      if (partial !== "") socket.write(partial)
    })
    socket.on("data", () => {})
    socket.on("error", () => {})
    socket.once("close", () => resolve(performance.now() - began))
  })

const metric = async (signal: Signal, series: string) => {
  const text = await (await fetch(signal.metricsUrl)).text()
  const line = text.split("\n").find((l) => l.startsWith(`${series} `))
  return Number(line?.split(" ")[1])
}

const rssKiB = async (pid: number) => {
  const status = await fs.readFile(`/proc/${pid}/status`, "utf8")
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1])
}

const count = (answers: ReadonlyArray<{ status: number }>, status: number) =>
  answers.filter((a) => a.status === status).length

const percentile = (values: ReadonlyArray<number>, p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))]!

describe("p2pal-signal under a flood from 40 addresses", () => {
  let signal: Signal
  beforeAll(async () => {
    signal = await startSignal([
      ...["--max-transfers", "200", "--max-websockets-per-client", "4"],
      ...["--limit-creates", "10", "--limit-joins", "20", "--limit-failed-joins", "5"],
    ])
  })
  afterAll(() => Promise.all([signal.stop(), removeTempDirs()]))

  it("answers honest clients, carries a real transfer, and refuses the flood with 429/503 and Retry-After", async () => {
    const dir = await tempDir()
    const file = path.join(dir, "honest.bin")
    await fs.writeFile(file, randomBytes(512 * 1024))
    const cli = ["--server", signal.url, "--stun", ""]
    // The honest sender waits before the flood begins; its receiver comes in the middle of it.
    const sender = start(bin("p2pal"), ["send", "-q", ...cli, file])
    const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)

    let flooding = true
    const deadline = performance.now() + 45_000
    const creates: Array<Answer> = []
    const joins: Array<Answer> = []
    const sockets: Array<{ status: number; retryAfter: string | undefined }> = []
    const open: Array<WebSocket> = []
    const flooder = async (i: number) => {
      const source = floodAddress(i)
      // Bounded: at most MaxRounds per address, for at most 45 s, and only while the honest side is at work.
      for (let round = 0; round < MaxRounds && flooding && performance.now() < deadline; round++) {
        const created = await request(signal, "POST", "/api/transfer", { ttlSeconds: 600 }, source)
        creates.push(created)
        joins.push(await request(signal, "POST", "/api/join", { nameplate: String(900_000 + i) }, source))
        if (created.status === 201) {
          const opened = await openSocket(signal, JSON.parse(created.body).token, source)
          sockets.push(opened)
          if (opened.socket !== undefined) open.push(opened.socket)
        }
      }
    }
    const slow = [
      // Half send nothing at all, half the start of their headers.
      ...Array.from({ length: 20 }, (_, i) =>
        slowClient(signal, floodAddress(i), i < 10 ? "" : "GET /healthz HTTP/1.1\r\n"),
      ),
      ...Array.from({ length: 20 }, (_, i) =>
        slowClient(
          signal,
          floodAddress(i),
          "POST /api/transfer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        ),
      ),
    ]
    const flood = Promise.all(Array.from({ length: Flooders }, (_, i) => flooder(i)))

    const honest: Array<Answer> = []
    const probing = (async () => {
      while (flooding) {
        honest.push(await request(signal, "GET", "/healthz", undefined, "127.0.0.1"))
        honest.push(await request(signal, "GET", "/readyz", undefined, "127.0.0.1"))
      }
    })()
    // Once the flood has filled the transfer cap, the honest receiver joins and takes the file.
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (creates.some((a) => a.status === 503) || !flooding) (clearInterval(check), resolve())
      }, 10)
    })
    const out = await tempDir()
    const received = await run(bin("p2pal"), ["recv", "-y", ...cli, "--out", out, code!])
    const floodStillRunning = creates.length < Flooders * MaxRounds && performance.now() < deadline
    flooding = false
    await Promise.all([flood, probing])
    const sent = await sender.finished

    expect(received.code, received.stderr).toBe(0)
    expect(sent.code, sent.stderr).toBe(0)
    expect(await fs.readFile(path.join(out, "honest.bin"))).toEqual(await fs.readFile(file))
    expect(floodStillRunning, "the flood ran until the transfer verified").toBe(true)
    // Every honest probe was answered 200, and quickly.
    expect(honest.length).toBeGreaterThan(10)
    expect(honest.map((a) => a.status).filter((status) => status !== 200)).toEqual([])
    // Generous for a loaded 2-core CI machine running the flood, the app and both CLIs: the point is that
    // none waits anywhere near a client's timeout.
    expect(Math.max(...honest.map((a) => a.ms))).toBeLessThan(5_000)

    // The flood met every cap, each refusal with Retry-After.
    const refused = [...creates, ...joins, ...sockets].filter((a) => a.status === 429 || a.status === 503)
    expect(refused.filter((a) => !(Number(a.retryAfter) >= 1))).toEqual([])
    expect(count(creates, 503)).toBeGreaterThan(0)
    expect(count(creates, 201)).toBeLessThanOrEqual(200)
    expect(count(joins, 429)).toBeGreaterThan(0)
    expect(count(sockets, 429)).toBeGreaterThan(0)
    expect(await metric(signal, 'p2pal_refused_total{cap="transfers"}')).toBe(count(creates, 503))
    expect(await metric(signal, 'p2pal_refused_total{cap="websockets-per-client"}')).toBe(count(sockets, 429))
    expect(await metric(signal, "p2pal_websockets_active")).toBe(open.length)
    expect(await metric(signal, "p2pal_transfers_held")).toBeLessThanOrEqual(200)

    // Slow headers go after 5 s and slow bodies after 10 s (Node checks each second; slack for a loaded machine).
    const heldOpen = await Promise.all(slow)
    expect(Math.max(...heldOpen.slice(0, 20))).toBeLessThan(8_000)
    expect(Math.max(...heldOpen.slice(20))).toBeLessThan(14_000)
    const rss = await rssKiB(signal.child.pid!)
    for (const socket of open) socket.close()
    console.log(
      `flood: ${creates.length + joins.length + sockets.length + slow.length} flood requests from ${Flooders} addresses ` +
        `(${count(creates, 201)} creates taken, ${count(creates, 503)} 503, ${refused.length - count(creates, 503)} 429); ` +
        `honest: ${count(honest, 200)}/${honest.length} answered 200, p50 ${percentile(
          honest.map((a) => a.ms),
          0.5,
        ).toFixed(1)} ms, ` +
        `p99 ${percentile(
          honest.map((a) => a.ms),
          0.99,
        ).toFixed(1)} ms; a 512 KiB transfer verified; RSS ${Math.round(rss / 1024)} MiB`,
    )
  }, 90_000)
})

describe("p2pal-signal's cap on WebSockets in all", () => {
  let signal: Signal
  beforeAll(async () => {
    signal = await startSignal(["--max-websockets", "20", "--max-websockets-per-client", "3"])
  })
  afterAll(() => signal.stop())

  it("refuses sockets past --max-websockets with 503 and Retry-After, and takes an honest one once some close", async () => {
    const token = async (source: string) =>
      JSON.parse((await request(signal, "POST", "/api/transfer", { ttlSeconds: 60 }, source)).body)
        .token as string
    const attempts = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const source = floodAddress(i)
        const tokens = await Promise.all([token(source), token(source), token(source)])
        return Promise.all(tokens.map((t) => openSocket(signal, t, source)))
      }),
    )
    const all = attempts.flat()
    expect(count(all, 101)).toBe(20)
    expect(count(all, 503)).toBe(10)
    expect(all.filter((a) => a.status === 503).every((a) => a.retryAfter === "5")).toBe(true)
    expect(await metric(signal, 'p2pal_refused_total{cap="websockets"}')).toBe(10)
    expect((await openSocket(signal, await token("127.0.0.1"), "127.0.0.1")).status).toBe(503)

    for (const { socket } of all) socket?.close()
    await waitFor("the closed sockets to be released", async () =>
      (await metric(signal, "p2pal_websockets_active")) === 0 ? true : undefined,
    )
    const admitted = await openSocket(signal, await token("127.0.0.1"), "127.0.0.1")
    expect(admitted.status).toBe(101)
    admitted.socket?.close()
  })
})

import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as net from "node:net"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket, { WebSocketServer } from "ws"
import { words as wordlist } from "../../libs/domain/src/Wordlist.js"
import {
  bin,
  type Finished,
  removeTempDirs,
  type Running,
  type Signal,
  start,
  startSignal,
  tempDir,
  useSignalApp,
} from "../support/Processes.js"

const signalApp = useSignalApp()

const p2pal = bin("p2pal")
const joinCode = /^([a-z]+)-([a-z]+)-(\d+)$/
/** Every wait on a process is bounded: a security failure must be reported, never a silent hang. */
const SettleWithinMs = 20_000

const flags = (server: string) => ["--server", server, "--stun", ""]

/** `p2pal send -q` against `server`: its stdout carries only the join code. */
const startSend = async (server: string, file: string) => {
  const sender = start(p2pal, ["send", "-q", ...flags(server), file])
  const [code, first, second, nameplate] = await sender.line(joinCode)
  return { code: code!, words: [first!, second!] as const, nameplate: nameplate!, sender }
}

const startRecv = (server: string, code: string, out: string) =>
  start(p2pal, ["recv", "-y", ...flags(server), "--out", out, code])

/** The process's result, or a failure naming it (after killing it) if it has not exited within `ms`. */
const settled = (what: string, running: Running, ms = SettleWithinMs): Promise<Finished> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      running.child.kill("SIGKILL")
      reject(new Error(`${what} did not exit within ${ms} ms`))
    }, ms)
  })
  return Promise.race([running.finished, timeout]).finally(() => clearTimeout(timer))
}

/** What is in `dir`, or null when it does not exist. */
const entries = (dir: string) => fs.readdir(dir).catch(() => null)

const smallFile = async () => {
  const root = await tempDir()
  const file = path.join(root, "secret.bin")
  await fs.writeFile(file, randomBytes(10_000))
  return { root, file }
}

const listen = (server: net.Server | http.Server) =>
  new Promise<number>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)),
  )

const close = (server: net.Server | http.Server) =>
  new Promise<void>((resolve) => server.close(() => resolve()))

// ---------------------------------------------------------------------------------------------------
// 1. What the signal app (and anyone on the path to it) sees

/** One TCP connection through the recording proxy: every byte each way, in order. */
interface Connection {
  readonly up: Array<Buffer>
  readonly down: Array<Buffer>
}

/**
 * A plain TCP proxy in front of `target` (host:port) that records every byte. Connections are filed
 * under whatever `bucket` is current when they open, so consecutive transfers can be told apart.
 */
const recordingProxy = async (target: URL) => {
  const buckets = new Map<string, Array<Connection>>()
  let bucket = "none"
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const connection: Connection = { up: [], down: [] }
    const list = buckets.get(bucket) ?? []
    list.push(connection)
    buckets.set(bucket, list)
    const upstream = net.connect(Number(target.port), target.hostname)
    sockets.add(client).add(upstream)
    client.on("data", (d: Buffer) => {
      connection.up.push(d)
      upstream.write(d)
    })
    upstream.on("data", (d: Buffer) => {
      connection.down.push(d)
      client.write(d)
    })
    client.on("end", () => upstream.end())
    upstream.on("end", () => client.end())
    const drop = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on("error", drop).on("close", () => sockets.delete(client))
    upstream.on("error", drop).on("close", () => sockets.delete(upstream))
  })
  const port = await listen(server)
  return {
    url: `http://127.0.0.1:${port}`,
    use: (name: string) => {
      bucket = name
    },
    connections: (name: string) => buckets.get(name) ?? [],
    close: () => {
      sockets.forEach((s) => s.destroy())
      return close(server)
    },
  }
}

/** The payloads of the WebSocket frames in `bytes`, unmasked (a client masks every frame it sends). */
const websocketPayloads = (bytes: Buffer): Array<Buffer> => {
  const payloads: Array<Buffer> = []
  let at = 0
  while (at + 2 <= bytes.length) {
    const first = bytes[at]!
    const second = bytes[at + 1]!
    expect(first & 0x40, "a compressed frame: this decoder reads uncompressed frames only").toBe(0)
    let length = second & 0x7f
    let header = 2
    if (length === 126) {
      length = bytes.readUInt16BE(at + 2)
      header = 4
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at + 2))
      header = 10
    }
    const masked = (second & 0x80) !== 0
    const mask = masked ? bytes.subarray(at + header, at + header + 4) : undefined
    if (masked) header += 4
    const payload = Buffer.from(bytes.subarray(at + header, at + header + length))
    if (payload.length < length) break // the peer was cut off mid-frame
    if (mask !== undefined) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!
    payloads.push(payload)
    at += header + length
  }
  return payloads
}

/** The head of an HTTP message (up to the blank line) and the bytes after it. */
const split = (chunks: ReadonlyArray<Buffer>) => {
  const bytes = Buffer.concat(chunks)
  const end = bytes.indexOf("\r\n\r\n")
  return end === -1
    ? { head: bytes.toString("latin1"), rest: Buffer.alloc(0), bytes }
    : { head: bytes.subarray(0, end + 4).toString("latin1"), rest: bytes.subarray(end + 4), bytes }
}

/**
 * A connection as readable text, each way: the HTTP messages as they are and, after a WebSocket
 * upgrade, the frames' payloads decoded (the raw client frames are masked, so searching them would
 * find nothing even if the words were there).
 */
const readable = ({ up, down }: Connection) => {
  const request = split(up)
  const response = split(down)
  if (!/^HTTP\/1\.1 101 /.test(response.head))
    return { up: request.bytes.toString("utf8"), down: response.bytes.toString("utf8") }
  expect(response.head, "permessage-deflate would hide the payloads from this capture").not.toMatch(
    /^sec-websocket-extensions:.*permessage-deflate/im,
  )
  const text = ({ head, rest }: ReturnType<typeof split>) =>
    [head, ...websocketPayloads(rest).map((p) => p.toString("utf8"))].join("\n")
  return { up: text(request), down: text(response) }
}

/**
 * `word` standing alone: not inside a longer word ("actpass" for "act") nor inside a run of base64 (a
 * sealed box or a token, where any short word turns up by chance now and then). Leaks glued to the
 * other word are what `wholeForms` looks for.
 */
const mentions = (text: string, word: string) =>
  new RegExp(`(?<![A-Za-z0-9+/])${word}(?![A-Za-z0-9+/])`).test(text)

/** Every form in which a code could leak whole: the code itself and the two words together. */
const wholeForms = ([first, second]: readonly [string, string], code: string) => [
  code,
  `${first}-${second}`,
  `${first} ${second}`,
  `${first}${second}`,
]

describe("what the signal app sees", () => {
  let signal: Signal | undefined
  let proxy: Awaited<ReturnType<typeof recordingProxy>> | undefined
  beforeAll(async () => {
    signal = await startSignal()
    proxy = await recordingProxy(new URL(signal.url))
  })
  afterAll(async () => {
    await proxy?.close()
    await signal?.stop()
    await removeTempDirs()
  })

  it("never receives the code's words, and never logs them or a token", async () => {
    // Two transfers, so that a word that is part of the protocol's own vocabulary ("accept" in an HTTP
    // header, "group" in SDP) can be recognised in the other transfer's traffic, whose code does not
    // contain it, instead of being taken for a leak.
    // The signal app's log is cut the same way: what it logged during each transfer ("transfer created"
    // names a word of the list, and is no leak).
    const transfers: Array<{
      code: string
      words: readonly [string, string]
      up: string
      down: string
      log: string
    }> = []
    let seen = { stdout: 0, stderr: 0 }
    const loggedSince = () => {
      const { stdout, stderr } = signal!.output()
      const since = `${stdout.slice(seen.stdout)}\n${stderr.slice(seen.stderr)}`
      seen = { stdout: stdout.length, stderr: stderr.length }
      return since
    }
    loggedSince()
    for (const name of ["first", "second"]) {
      proxy!.use(name)
      const { root, file } = await smallFile()
      const out = path.join(root, "out")
      const { code, words, sender } = await startSend(proxy!.url, file)
      const received = await settled("recv", startRecv(proxy!.url, code, out))
      const sent = await settled("send", sender)
      expect(received.code, received.stderr).toBe(0)
      expect(sent.code, sent.stderr).toBe(0)
      expect(await fs.readFile(path.join(out, "secret.bin"))).toEqual(await fs.readFile(file))
      const connections = proxy!.connections(name)
      // create + join over HTTP, and one WebSocket per side
      expect(connections.length).toBeGreaterThanOrEqual(4)
      transfers.push({
        code,
        words,
        up: connections.map((c) => readable(c).up).join("\n"),
        down: connections.map((c) => readable(c).down).join("\n"),
        log: loggedSince(),
      })
    }
    const [first, second] = transfers as [(typeof transfers)[0], (typeof transfers)[0]]
    // The capture is real: the WebSocket payloads were decoded (both sides signal through the relay).
    for (const t of transfers) expect(t.up).toContain('"_tag":"signal"')

    let wordsChecked = 0
    for (const [mine, other] of [
      [first, second],
      [second, first],
    ] as const) {
      for (const form of wholeForms(mine.words, mine.code)) expect(mine.up).not.toContain(form)
      for (const word of mine.words) {
        const natural = !other.words.includes(word) && mentions(other.up, word)
        if (natural) continue
        wordsChecked++
        expect(mentions(mine.up, word), `the code word "${word}" reached the signal app`).toBe(false)
      }
    }
    expect(wordsChecked).toBeGreaterThan(0)

    const tokens = transfers.flatMap((t) => [...t.down.matchAll(/"token":"([^"]+)"/g)].map((m) => m[1]!))
    expect(tokens.length).toBe(4) // a sender's and a receiver's in each transfer

    await proxy!.close()
    const stopped = await signal!.stop()
    signal = undefined
    const logs = `${stopped.stdout.replace(/^p2pal-signal listening on \S+\n/, "")}\n${stopped.stderr}`
    for (const [mine, other] of [
      [first, second],
      [second, first],
    ] as const) {
      for (const form of wholeForms(mine.words, mine.code)) expect(logs).not.toContain(form)
      for (const word of mine.words) {
        if (!other.words.includes(word) && mentions(other.log, word)) continue
        expect(mentions(logs, word), `the log names "${word}"`).toBe(false)
      }
    }
    for (const token of tokens) expect(logs).not.toContain(token)
  })
})

// ---------------------------------------------------------------------------------------------------
// 2. A wrong code

/** A word of the list that is none of `avoid`. */
const otherWord = (avoid: ReadonlyArray<string>, from = 0) => {
  for (let i = from; i < wordlist.length; i++) if (!avoid.includes(wordlist[i]!)) return wordlist[i]!
  throw new Error("no word left")
}

describe("a receiver with the wrong words", () => {
  it.each([
    ["both words", (w: readonly [string, string]) => [otherWord(w, 100), otherWord(w, 1000)] as const],
    ["only the second word", (w: readonly [string, string]) => [w[0], otherWord(w, 1500)] as const],
  ])("fails on both sides with exit 9 (%s wrong) and burns the code", async (_, wrong) => {
    const { root, file } = await smallFile()
    const { code, words, nameplate, sender } = await startSend(signalApp.url(), file)
    const [first, second] = wrong(words)
    const guess = `${first}-${second}-${nameplate}`
    expect(guess).not.toBe(code)

    const out = path.join(root, "out")
    const received = await settled("recv with a wrong code", startRecv(signalApp.url(), guess, out))
    const sent = await settled("send after a wrong guess", sender)
    expect(received.code, received.stderr).toBe(9)
    expect(received.stderr).toContain("code did not match — ask the sender for a new code")
    expect(sent.code, sent.stderr).toBe(9)
    expect(sent.stderr).toContain("someone tried a wrong code")
    // Neither side repeats the secret words in what it prints.
    expect(received.stderr).not.toContain(code)
    expect(sent.stderr).not.toContain(code)
    expect((await entries(out)) ?? []).toEqual([])

    // One guess per code: the right words do not help any more.
    const late = await settled("recv with the right code", startRecv(signalApp.url(), code, out))
    expect(late.code, late.stderr).toBe(3)
    expect((await entries(out)) ?? []).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------------
// 3. A signal server that alters what it relays

/** `c` replaced by a different character of the same class (digit, lower, upper), so formats survive. */
const flipChar = (c: string) => {
  for (const alphabet of ["0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]) {
    const i = alphabet.indexOf(c)
    if (i !== -1) return alphabet[(i + 1) % alphabet.length]!
  }
  return undefined
}

/**
 * `data` with a few characters near its middle changed (same length, still a string of the same shape:
 * only letters and digits are touched). An SDP fingerprint, while one is visible, is swapped instead.
 */
const tamper = (data: string): string => {
  const fingerprint = /(a=fingerprint:\S+ )([0-9A-Fa-f:]+)/
  if (fingerprint.test(data))
    return data.replace(
      fingerprint,
      (_, prefix: string, hex: string) =>
        prefix + [...hex].map((c) => (c === ":" ? c : c === "0" ? "1" : "0")).join(""),
    )
  const chars = [...data]
  let flipped = 0
  for (let i = Math.floor(chars.length / 2); i < chars.length && flipped < 3; i++) {
    const to = flipChar(chars[i]!)
    if (to !== undefined) {
      chars[i] = to
      flipped++
    }
  }
  for (let i = Math.floor(chars.length / 2) - 1; i >= 0 && flipped < 3; i--) {
    const to = flipChar(chars[i]!)
    if (to !== undefined) {
      chars[i] = to
      flipped++
    }
  }
  return chars.join("")
}

/**
/** What a malicious relay makes of the `data` of a signal that `from` sent (unchanged: relayed as is). */
type Rewrite = (data: string, from: Side) => string | Promise<string>
type Side = "sender" | "receiver"

/**
 * A signal server in front of the real one: HTTP calls are forwarded untouched, and each client
 * WebSocket is bridged to one of its own on the real app, with the `data` of every `signal` a client
 * sends passed through `rewrite` (only in that direction, so each message is rewritten at most once).
 */
const maliciousRelay = async (real: string, rewrite: Rewrite) => {
  const tampered: Array<{ readonly before: string; readonly after: string }> = []
  const sockets = new Set<WebSocket>()
  let connections = 0
  const wss = new WebSocketServer({ noServer: true })
  const server = http.createServer(async (req, res) => {
    const chunks: Array<Buffer> = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    try {
      const answer = await fetch(new URL(req.url!, real), {
        method: req.method!,
        headers: { "content-type": req.headers["content-type"] ?? "application/json" },
        ...(req.method === "GET" || req.method === "HEAD" ? {} : { body: Buffer.concat(chunks) }),
      })
      res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "text/plain" })
      res.end(await answer.text())
    } catch (e) {
      res.writeHead(502).end(String(e))
    }
  })
  server.on("upgrade", (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (client) => {
      const target = new URL(req.url!, real)
      target.protocol = "ws:"
      const upstream = new WebSocket(target)
      sockets.add(client).add(upstream)
      const pending: Array<string> = []
      const toUpstream = (text: string): void => {
        if (upstream.readyState === WebSocket.OPEN) upstream.send(text)
        else pending.push(text)
      }
      upstream.on("open", () => pending.splice(0).forEach((t) => upstream.send(t)))
      // The sender's socket opens first: the receiver only learns the code after the sender has it.
      const side: Side = connections++ === 0 ? "sender" : "receiver"
      // One message at a time, so a rewrite that has to wait does not reorder what follows.
      let queue = Promise.resolve()
      client.on("message", (raw) => {
        const text = raw.toString()
        queue = queue.then(async () => {
          let message: { _tag?: unknown; data?: unknown }
          try {
            message = JSON.parse(text)
          } catch {
            return toUpstream(text)
          }
          if (message._tag !== "signal" || typeof message.data !== "string") return toUpstream(text)
          const after = await rewrite(message.data, side)
          if (after === message.data) return toUpstream(text)
          tampered.push({ before: message.data, after })
          toUpstream(JSON.stringify({ _tag: "signal", data: after }))
        })
      })
      upstream.on("message", (raw) => client.readyState === WebSocket.OPEN && client.send(raw.toString()))
      const closeWith = (ws: WebSocket, code: number, reason: Buffer) => {
        const sendable =
          code === 1000 ||
          (code >= 1001 && code <= 1014 && code !== 1005 && code !== 1006) ||
          (code >= 3000 && code <= 4999)
        if (ws.readyState === WebSocket.OPEN) sendable ? ws.close(code, reason) : ws.terminate()
        else if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
      }
      client.on("close", (code, reason) => closeWith(upstream, code, reason))
      upstream.on("close", (code, reason) => closeWith(client, code, reason))
      client.on("error", () => upstream.terminate())
      upstream.on("error", () => client.terminate())
    }),
  )
  const port = await listen(server)
  return {
    url: `http://127.0.0.1:${port}`,
    tampered,
    close: () => {
      sockets.forEach((s) => s.terminate())
      wss.close()
      server.closeAllConnections()
      return close(server)
    },
  }
}

/** A signal's `data` as JSON, if it is a JSON object. */
const parse = (data: string): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(data)
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

/** The PAKE's own messages (an element, a key confirmation), which are not sealed. */
const pakeMessage = (data: string) => {
  const tag = parse(data)?._tag
  return tag === "pake" || tag === "confirm"
}

/** Alters every signal (the PAKE's own messages too). */
const alterAll: Rewrite = (data) => tamper(data)

/** Alters only what is sealed with the PAKE's keys: the PAKE itself goes through untouched. */
const alterSealed: Rewrite = (data) => (pakeMessage(data) ? data : tamper(data))

/**
 * Swaps the PAKE elements: each side is handed back its own element instead of its peer's (valid
 * points both, so only key confirmation can notice). Everything else is relayed as is.
 */
const reflectElements = (): Rewrite => {
  const elements = {} as Record<Side, { promise: Promise<string>; resolve: (element: string) => void }>
  for (const side of ["sender", "receiver"] as const) {
    let resolve!: (element: string) => void
    elements[side] = { promise: new Promise<string>((r) => (resolve = r)), resolve }
  }
  return async (data, from) => {
    const message = parse(data)
    if (message?._tag !== "pake" || typeof message.element !== "string") return data
    elements[from].resolve(message.element)
    // What `from` sends goes to its peer: make it the peer's own element.
    const peer = from === "sender" ? "receiver" : "sender"
    return JSON.stringify({ _tag: "pake", element: await elements[peer].promise })
  }
}

describe("a signal server that tampers with the signaling it relays", () => {
  it("(control: the same relay altering nothing carries a transfer through)", async () => {
    const relay = await maliciousRelay(signalApp.url(), (data) => data)
    try {
      const { root, file } = await smallFile()
      const { code, sender } = await startSend(relay.url, file)
      const out = path.join(root, "out")
      const received = await settled("recv through a faithful relay", startRecv(relay.url, code, out))
      expect(received.code, received.stderr).toBe(0)
      expect((await settled("send through a faithful relay", sender)).code).toBe(0)
      expect(await fs.readFile(path.join(out, "secret.bin"))).toEqual(await fs.readFile(file))
      expect(relay.tampered).toEqual([])
    } finally {
      await relay.close()
    }
  })

  it.each([
    ["alters every signal message", () => alterAll],
    ["alters only the sealed messages after the PAKE", () => alterSealed],
    ["swaps the PAKE elements (each side gets its own back)", reflectElements],
  ])("that %s makes both peers stop with exit 9 naming it, and nothing is written", async (_, rewrite) => {
    const relay = await maliciousRelay(signalApp.url(), rewrite())
    try {
      const { root, file } = await smallFile()
      const { code, sender } = await startSend(relay.url, file)
      const out = path.join(root, "out")
      const [received, sent] = await Promise.all([
        settled("recv through a tampering relay", startRecv(relay.url, code, out)),
        settled("send through a tampering relay", sender),
      ])
      // The relay did alter something (otherwise this test proves nothing).
      expect(relay.tampered.length).toBeGreaterThan(0)
      for (const { before, after } of relay.tampered) {
        expect(after).not.toBe(before)
        expect(after.length).toBe(before.length)
      }
      expect(received.code, received.stderr).toBe(9)
      expect(received.stderr).toMatch(/tampered|did not match/)
      expect(sent.code, sent.stderr).toBe(9)
      expect(sent.stderr).toMatch(/tampered|did not match/)
      expect((await entries(out)) ?? []).toEqual([])
    } finally {
      await relay.close()
    }
  })
})

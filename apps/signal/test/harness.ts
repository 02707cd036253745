import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import WebSocket from "ws"

const Bin = fileURLToPath(new URL("../../../bin/p2pal-signal", import.meta.url))
const WaitMs = 10_000

export const within = <A>(promise: Promise<A>, what: string, ms = WaitMs): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

export interface Signal {
  readonly url: string
  readonly child: ChildProcess
  readonly stderr: () => string
  readonly stop: () => Promise<number | null>
}

/** Runs the built app as a user would, on a free loopback port read from its listening line. */
export const startSignal = async (): Promise<Signal> => {
  const child = spawn(Bin, ["--port", "0", "--host", "127.0.0.1"], { stdio: ["ignore", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  child.stderr!.on("data", (chunk) => (stderr += chunk))
  const listening = new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (chunk) => {
      stdout += chunk
      const match = /^p2pal-signal listening on (http:\/\/\S+)\n/m.exec(stdout)
      if (match) resolve(match[1]!)
    })
    child.once("exit", (code) => reject(new Error(`p2pal-signal exited with ${code}: ${stderr}`)))
  })
  const url = await within(listening, "the listening line")
  const stop = async () => {
    if (child.exitCode !== null) return child.exitCode
    const exited = once(child, "exit")
    child.kill("SIGTERM")
    const [code] = await within(exited, "p2pal-signal to exit")
    return code as number | null
  }
  return { url, child, stderr: () => stderr, stop }
}

export const post = async (signal: Signal, path: string, body: string | Uint8Array) => {
  const response = await fetch(new URL(path, signal.url), { method: "POST", body })
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

export const postJson = (signal: Signal, path: string, body: unknown) =>
  post(signal, path, JSON.stringify(body))

export const createTransfer = async (signal: Signal, ttlSeconds = 60) => {
  const created = await postJson(signal, "/api/transfer", { ttlSeconds })
  if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created)}`)
  return created.body as { nameplate: string; token: string; transferId: string; expiresAt: number }
}

export const joinTransfer = async (signal: Signal, nameplate: string) => {
  const joined = await postJson(signal, "/api/join", { nameplate })
  if (joined.status !== 200) throw new Error(`join failed: ${JSON.stringify(joined)}`)
  return joined.body as { token: string; transferId: string; expiresAt: number }
}

export interface Client {
  readonly ws: WebSocket
  /** The next server message, parsed; fails if none arrives in time. */
  readonly next: () => Promise<{ _tag: string; [key: string]: unknown }>
  readonly send: (message: unknown) => void
  readonly closed: () => Promise<{ code: number; reason: string }>
}

/** A WebSocket to the relay whose frames queue up until the test asks for them. */
export const connect = (signal: Signal, token: string): Client => {
  const url = new URL("/api/ws", signal.url)
  url.protocol = "ws:"
  url.searchParams.set("token", token)
  const ws = new WebSocket(url)
  const queued: Array<string> = []
  const waiting: Array<(frame: string) => void> = []
  ws.on("message", (data) => {
    const frame = data.toString()
    const waiter = waiting.shift()
    if (waiter) waiter(frame)
    else queued.push(frame)
  })
  // Failures show up as the close code the tests assert on.
  ws.on("error", () => {})
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  )
  return {
    ws,
    next: () => {
      const frame = queued.shift()
      const pending =
        frame !== undefined ? Promise.resolve(frame) : new Promise<string>((r) => waiting.push(r))
      return within(pending, "a server message").then((text) => JSON.parse(text))
    },
    send: (message) => {
      const frame = typeof message === "string" ? message : JSON.stringify(message)
      if (ws.readyState === WebSocket.OPEN) ws.send(frame)
      else ws.once("open", () => ws.send(frame))
    },
    closed: () => within(closed, "the socket to close"),
  }
}

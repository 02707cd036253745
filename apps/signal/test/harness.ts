import WebSocket from "ws"
import type { Signal } from "../../../test/support/Processes.js"

export { type Signal, startSignal } from "../../../test/support/Processes.js"

const WaitMs = 10_000

export const within = <A>(promise: Promise<A>, what: string, ms = WaitMs): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
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
  /** The next server message, parsed, without its mailbox id (which `lastId` then returns). */
  readonly next: () => Promise<{ _tag: string; [key: string]: unknown }>
  readonly lastId: () => string | undefined
  readonly send: (message: unknown) => void
  readonly closed: () => Promise<{ code: number; reason: string }>
}

/** A WebSocket to the relay whose frames queue up until the test asks for them. */
export const connect = (signal: Signal, token: string, after?: string): Client => {
  const url = new URL("/api/ws", signal.url)
  url.protocol = "ws:"
  url.searchParams.set("token", token)
  if (after !== undefined) url.searchParams.set("after", after)
  let lastId: string | undefined
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
      return within(pending, "a server message").then((text) => {
        const { id, ...message } = JSON.parse(text) as { id: unknown; _tag: string }
        if (typeof id !== "string" || !/^[0-9]+(-[0-9]+)?$/.test(id))
          throw new Error(`a server message without a mailbox id: ${text}`)
        lastId = id
        return message
      })
    },
    lastId: () => lastId,
    send: (message) => {
      const frame = typeof message === "string" ? message : JSON.stringify(message)
      if (ws.readyState === WebSocket.OPEN) ws.send(frame)
      else ws.once("open", () => ws.send(frame))
    },
    closed: () => within(closed, "the socket to close"),
  }
}

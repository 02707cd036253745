import { randomUUID } from "node:crypto"
import { SignalApi } from "@p2pal/domain"
import { FastCheck, Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { createTransfer, joinTransfer, type Signal, startSignal, within } from "./harness.js"

const RequestMs = 5_000

let signal: Signal
beforeAll(async () => {
  signal = await startSignal()
})
afterAll(async () => {
  await signal.stop()
})

const isApiError = Schema.is(SignalApi.ApiErrorBody)

/** Whether `text` is a request the endpoint at `path` takes (extra fields are ignored, as the app does). */
const accepts = (path: string, text: string) => {
  const is =
    path === "/api/transfer" ? Schema.is(SignalApi.CreateTransferRequest) : Schema.is(SignalApi.JoinRequest)
  try {
    return is(JSON.parse(text))
  } catch {
    return false
  }
}
const Endpoints = ["/api/transfer", "/api/join", "/api/ws", "/healthz", "/readyz", "/metrics"]

const methods = FastCheck.constantFrom("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
const paths = FastCheck.oneof(
  FastCheck.constantFrom(...Endpoints, "/", "/api", "/api/transfer/", "/API/JOIN", "//api/join"),
  FastCheck.string({ maxLength: 200 }).map((text) => `/${encodeURIComponent(text)}`),
  FastCheck.tuple(FastCheck.constantFrom(...Endpoints), FastCheck.string({ maxLength: 100 })).map(
    ([path, query]) => `${path}?${encodeURIComponent(query)}`,
  ),
)
const contentTypes = FastCheck.option(
  FastCheck.oneof(
    FastCheck.constantFrom(
      "application/json",
      "application/json; charset=utf-16",
      "text/plain",
      "multipart/form-data; boundary=x",
      "application/x-www-form-urlencoded",
    ),
    FastCheck.stringMatching(/^[\x21-\x7e]{1,60}$/),
  ),
  { nil: undefined },
)
const bodies = FastCheck.oneof(
  FastCheck.string({ maxLength: 300 }),
  FastCheck.uint8Array({ maxLength: 300 }),
  FastCheck.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)),
  FastCheck.record(
    { ttlSeconds: FastCheck.anything(), nameplate: FastCheck.anything() },
    { requiredKeys: [] },
  ).map((value) => JSON.stringify(value)),
  FastCheck.constantFrom('{"ttlSeconds":60}', '{"nameplate":"987654"}', "{}", "null", "[]", '{"ttlSeconds":'),
  FastCheck.integer({ min: SignalApi.MaxRequestBodyBytes + 1, max: 1024 * 1024 }).map((size) =>
    new Uint8Array(size).fill(0x7b),
  ),
)

/** What a client may send on a relay socket: anything, valid messages included, in any order. */
const frames = FastCheck.oneof(
  FastCheck.string({ maxLength: 300 }),
  FastCheck.uint8Array({ minLength: 1, maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
  FastCheck.integer({ min: SignalApi.MaxSocketMessageBytes + 1, max: 1024 * 1024 }).map((size) =>
    JSON.stringify({ _tag: "signal", data: "x".repeat(size) }),
  ),
  FastCheck.string({ maxLength: 200 }).map((data) => JSON.stringify({ _tag: "signal", data })),
  FastCheck.constantFrom(
    '{"_tag":"complete"}',
    '{"_tag":"abort","reason":"stopped"}',
    '{"_tag":"abort","reason":"fuzz"}',
    '{"_tag":"peer-joined"}',
  ),
  FastCheck.record(
    {
      _tag: FastCheck.constantFrom("signal", "complete", "abort", "peer-left", "offer"),
      data: FastCheck.anything(),
      reason: FastCheck.anything(),
    },
    { requiredKeys: ["_tag"] },
  ).map((value) => JSON.stringify(value)),
  FastCheck.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
)

/** Undefined four times in five, else a value of `arbitrary`. */
const rarely = <A>(arbitrary: FastCheck.Arbitrary<A>) =>
  FastCheck.oneof({ arbitrary: FastCheck.constant(undefined), weight: 4 }, { arbitrary, weight: 1 })

const scenarios = FastCheck.record({
  /** The side that sends the frames; the other side only listens. */
  fuzzer: FastCheck.constantFrom("sender" as const, "receiver" as const),
  /** Usually the side's own token (undefined), sometimes anything. */
  token: rarely(FastCheck.string({ maxLength: 40 })),
  /** Usually none, sometimes a message id or anything. */
  after: rarely(
    FastCheck.oneof(
      FastCheck.constantFrom("0", "1", "99999999999", "1-0"),
      FastCheck.string({ maxLength: 30 }),
    ),
  ),
  /** Whether the other side is connected before the frames, or only after them. */
  peerFirst: FastCheck.boolean(),
  frames: FastCheck.array(frames, { maxLength: 6 }),
})

interface Socket {
  readonly ws: WebSocket
  readonly closed: Promise<{ code: number; reason: string }>
  /** Resolves once a relayed signal carrying `data` arrives. */
  readonly receives: (data: string) => Promise<void>
}

const open = (token: string, after?: string): Socket => {
  const url = new URL("/api/ws", signal.url)
  url.protocol = "ws:"
  url.searchParams.set("token", token)
  if (after !== undefined) url.searchParams.set("after", after)
  const ws = new WebSocket(url)
  // Failures show up as the close code.
  ws.on("error", () => {})
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once("close", (code, reason) => resolve({ code, reason: String(reason) })),
  )
  const receives = (data: string) =>
    new Promise<void>((resolve) =>
      ws.on("message", (frame) => {
        if (String(frame).includes(JSON.stringify(data))) resolve()
      }),
    )
  return { ws, closed, receives }
}

const opened = (socket: Socket) =>
  Promise.race([new Promise((resolve) => socket.ws.once("open", resolve)), socket.closed])

describe("p2pal-signal under hostile clients", () => {
  it("answers garbage, oversized and misdirected requests with a 4xx, never a 5xx or a hang", async () => {
    await FastCheck.assert(
      FastCheck.asyncProperty(methods, paths, contentTypes, bodies, async (method, path, type, body) => {
        // Appended, not resolved: "//api/join" is a path here, not another host.
        const response = await fetch(`${signal.url}${path}`, {
          method,
          ...(method === "GET" || method === "HEAD" ? {} : { body }),
          headers: type === undefined ? {} : { "content-type": type },
          signal: AbortSignal.timeout(RequestMs),
        })
        const text = await response.text()
        expect(response.status).toBeLessThan(500)
        if (response.status >= 400 && method !== "HEAD") expect(isApiError(JSON.parse(text))).toBe(true)
      }),
      { numRuns: 100 },
    )
  })

  it("answers malformed or wrongly typed bodies 400 and bodies over the cap 413, whatever their content type", async () => {
    const wrong = FastCheck.oneof(
      FastCheck.string({ maxLength: 200 }).filter((text) => {
        try {
          JSON.parse(text)
          return false
        } catch {
          return true
        }
      }),
      FastCheck.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
      FastCheck.anything().map((value) => JSON.stringify({ ttlSeconds: value, nameplate: value }) ?? "{}"),
    )
    const body = FastCheck.oneof(
      wrong.map((text) => ({ text, status: 400, error: "bad_request" })),
      FastCheck.integer({ min: SignalApi.MaxRequestBodyBytes + 1, max: 64 * 1024 }).map((size) => ({
        text: JSON.stringify({ ttlSeconds: 60, nameplate: "42", pad: "x".repeat(size) }),
        status: 413,
        error: "payload_too_large",
      })),
    )
    await FastCheck.assert(
      FastCheck.asyncProperty(
        FastCheck.constantFrom("/api/transfer", "/api/join"),
        contentTypes,
        body,
        async (path, type, { text, status, error }) => {
          // What the contract accepts is no hostile body (it succeeds, or a join finds no transfer).
          FastCheck.pre(status === 413 || !accepts(path, text))
          const response = await fetch(`${signal.url}${path}`, {
            method: "POST",
            body: text,
            headers: type === undefined ? {} : { "content-type": type },
            signal: AbortSignal.timeout(RequestMs),
          })
          expect({ status: response.status, body: await response.json() }).toMatchObject({
            status,
            body: { error },
          })
        },
      ),
      { numRuns: 100 },
    )
  })

  it("answers any relay frames with a relayed message or a close with a code and a reason", async () => {
    await FastCheck.assert(
      FastCheck.asyncProperty(scenarios, async ({ fuzzer, token, after, peerFirst, frames }) => {
        const created = await createTransfer(signal)
        const joined = await joinTransfer(signal, created.nameplate)
        const [own, other] =
          fuzzer === "sender" ? [created.token, joined.token] : [joined.token, created.token]
        const fuzz = open(token ?? own, after)
        let peer = peerFirst ? open(other) : undefined
        try {
          await within(opened(fuzz), "the socket to open", RequestMs)
          // After everything else, a message that must reach the other side unless the socket was closed.
          const probe = randomUUID()
          for (const frame of [...frames, JSON.stringify({ _tag: "signal", data: probe })])
            fuzz.ws.send(frame, () => {})
          peer ??= open(other)
          const outcome = await within(
            Promise.race([peer.receives(probe).then(() => undefined), fuzz.closed]),
            "the probe to be relayed or the socket to be closed",
            RequestMs,
          )
          if (outcome !== undefined) {
            expect(outcome.code).not.toBe(1006)
            expect(outcome.reason).not.toBe("")
          }
        } finally {
          fuzz.ws.terminate()
          peer?.ws.terminate()
        }
      }),
      { numRuns: 50 },
    )
  })

  it("is still up after them, and logged no failure", async () => {
    expect(signal.child.exitCode).toBeNull()
    expect((await fetch(new URL("/healthz", signal.url))).status).toBe(200)
    const stopped = await signal.stop()
    expect(stopped.code).toBe(0)
    const failures = stopped.stderr
      .split("\n")
      .filter((line) => line !== "")
      .filter((line) => ["ERROR", "FATAL"].includes((JSON.parse(line) as { logLevel: string }).logLevel))
    expect(failures).toEqual([])
  })
})

import { describe, expect, it } from "vitest"
import { connect, createTransfer, joinTransfer, postJson, startSignal } from "./harness.js"

interface LogLine {
  readonly message: unknown
  readonly logLevel: string
  readonly timestamp: string
  readonly fiberId: string
  readonly annotations: Record<string, unknown>
}

/** Every string a log line carries, but the two the logger itself writes (a clock and a fiber id). */
const strings = (value: unknown, key = ""): Array<string> =>
  key === "timestamp" || key === "fiberId"
    ? []
    : typeof value === "string"
      ? [value]
      : typeof value === "object" && value !== null
        ? Object.entries(value).flatMap(([k, v]) => [k, ...strings(v, k)])
        : []

describe("p2pal-signal logs", () => {
  it("writes one JSON line per request and event to stderr, with no token, nameplate or query", async () => {
    const signal = await startSignal()
    const created = await createTransfer(signal)
    const joined = await joinTransfer(signal, created.nameplate)
    const sender = connect(signal, created.token)
    const receiver = connect(signal, joined.token)
    expect(await sender.next()).toEqual({ _tag: "peer-claimed" })
    expect(await sender.next()).toEqual({ _tag: "peer-joined" })
    sender.send({ _tag: "signal", data: "offer" })
    expect(await receiver.next()).toEqual({ _tag: "signal", data: "offer" })
    sender.ws.close(1000)
    receiver.ws.close(1000)
    await Promise.all([sender.closed(), receiver.closed()])
    // Refused requests quote what the client sent, and the nameplate is in their bodies.
    expect((await postJson(signal, "/api/join", { nameplate: created.nameplate })).status).toBe(409)
    expect((await fetch(new URL(`/healthz?token=${created.token}`, signal.url))).status).toBe(200)

    const stopped = await signal.stop()
    expect(stopped.code).toBe(0)
    expect(stopped.stdout).toBe(
      `p2pal-signal metrics on ${signal.metricsUrl}\np2pal-signal listening on ${signal.url}\n`,
    )
    const lines = stopped.stderr.split("\n").filter((line) => line !== "")
    const logs = lines.map((line) => JSON.parse(line) as LogLine)
    for (const log of logs)
      expect(log).toMatchObject({ logLevel: expect.any(String), message: expect.anything() })

    const requests = logs.filter((log) => log.message === "request").map((log) => log.annotations)
    for (const request of requests) {
      expect(request).toEqual({
        method: expect.any(String),
        path: expect.stringMatching(/^\/[^?]*$/),
        status: expect.any(Number),
        durationMs: expect.any(Number),
        clientIp: "127.0.0.1",
      })
    }
    expect(requests.map(({ method, path, status }) => `${method} ${path} ${status}`)).toEqual(
      expect.arrayContaining([
        "POST /api/transfer 201",
        "POST /api/join 200",
        "POST /api/join 409",
        "GET /healthz 200",
      ]),
    )
    expect(requests.filter(({ path }) => path === "/api/ws")).toHaveLength(2)
    expect(logs.map((log) => log.message)).toEqual(
      expect.arrayContaining(["transfer created", "transfer joined"]),
    )

    for (const line of lines) {
      expect(line).not.toContain(created.token)
      expect(line).not.toContain(joined.token)
      expect(line).not.toContain("token=")
      expect(line).not.toMatch(/nameplate/i)
    }
    // A nameplate is a short number: only a whole one in a string the app wrote counts as a leak, not
    // digits inside a number or a random id (base64url).
    const nameplate = new RegExp(`(?<![\\w-])${created.nameplate}(?![\\w-])`)
    for (const log of logs) for (const text of strings(log)) expect(text).not.toMatch(nameplate)
  })
})

import { SignalApi } from "@p2pal/domain"
import { Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createTransfer, post, postJson, type Signal, startSignal } from "./harness.js"

let signal: Signal
beforeAll(async () => {
  signal = await startSignal()
})
afterAll(async () => {
  await signal.stop()
})

const isApiError = Schema.is(SignalApi.ApiErrorBody)

describe("p2pal-signal HTTP API", () => {
  it("answers /healthz and /readyz", async () => {
    const health = await fetch(new URL("/healthz", signal.url))
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({ status: "ok" })
    const ready = await fetch(new URL("/readyz", signal.url))
    expect(ready.status).toBe(200)
  })

  it("creates a transfer with a 2-digit nameplate and a sender token", async () => {
    const before = Date.now()
    const created = await postJson(signal, "/api/transfer", { ttlSeconds: 60 })
    expect(created.status).toBe(201)
    const body = Schema.decodeUnknownSync(SignalApi.CreateTransferResponse)(created.body)
    expect(body.nameplate).toMatch(/^[0-9]{2}$/)
    expect(body.iceServers).toEqual([])
    expect(body.expiresAt).toBeGreaterThanOrEqual(before + 60_000)
    expect(body.expiresAt).toBeLessThanOrEqual(Date.now() + 60_000)
  })

  it("lets one receiver join; a second join and unknown nameplates are refused", async () => {
    const created = await createTransfer(signal)
    const joined = await postJson(signal, "/api/join", { nameplate: created.nameplate })
    expect(joined.status).toBe(200)
    const body = Schema.decodeUnknownSync(SignalApi.JoinResponse)(joined.body)
    expect(body.transferId).toBe(created.transferId)
    expect(body.token).not.toBe(created.token)

    const again = await postJson(signal, "/api/join", { nameplate: created.nameplate })
    expect(again.status).toBe(409)
    expect(again.body["error"]).toBe("already_claimed")

    const unknown = await postJson(signal, "/api/join", { nameplate: "987654" })
    expect(unknown.status).toBe(404)
    expect(unknown.body["error"]).toBe("not_found")
  })

  it("answers 410 to a join after the TTL", async () => {
    const created = await createTransfer(signal, 1)
    await new Promise((resolve) => setTimeout(resolve, created.expiresAt - Date.now() + 50))
    const late = await postJson(signal, "/api/join", { nameplate: created.nameplate })
    expect(late.status).toBe(410)
    expect(late.body["error"]).toBe("expired")
  })

  it.each([
    ["malformed JSON", "/api/transfer", '{"ttlSeconds":'],
    ["an empty body", "/api/transfer", ""],
    ["a TTL out of range", "/api/transfer", '{"ttlSeconds":0}'],
    ["a fractional TTL", "/api/transfer", '{"ttlSeconds":1.5}'],
    ["a missing nameplate", "/api/join", "{}"],
    ["a nameplate with letters", "/api/join", '{"nameplate":"ab"}'],
  ])("answers 400 bad_request to %s", async (_, path, body) => {
    const response = await post(signal, path, body)
    expect(response.status).toBe(400)
    expect(response.body["error"]).toBe("bad_request")
    expect(response.body["message"]).toEqual(expect.any(String))
  })

  it("answers 413 to a body over the cap, with or without a length", async () => {
    const big = JSON.stringify({ ttlSeconds: 60, pad: "x".repeat(SignalApi.MaxRequestBodyBytes) })
    const sized = await post(signal, "/api/transfer", big)
    expect(sized.status).toBe(413)
    expect(sized.body["error"]).toBe("payload_too_large")

    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 64; i++) controller.enqueue(new Uint8Array(1024).fill(32))
        controller.close()
      },
    })
    const streamed = await fetch(new URL("/api/join", signal.url), {
      method: "POST",
      body: chunks,
      duplex: "half",
    } as RequestInit)
    expect(streamed.status).toBe(413)
  })

  it.each([
    ["application/json", "application/json"],
    ["a form (curl -d)", "application/x-www-form-urlencoded"],
    ["text", "text/plain"],
    ["bytes", "application/octet-stream"],
  ])("takes a JSON body sent as %s", async (_, type) => {
    const response = await fetch(new URL("/api/transfer", signal.url), {
      method: "POST",
      body: '{"ttlSeconds":60}',
      headers: { "content-type": type },
    })
    expect(response.status).toBe(201)
  })

  it("serves the OpenAPI document of the endpoints, with each answer's status", async () => {
    const response = await fetch(new URL("/api/openapi.json", signal.url))
    expect(response.status).toBe(200)
    const { openapi, paths } = (await response.json()) as {
      openapi: string
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>
    }
    expect(openapi).toMatch(/^3\./)
    const statuses = (path: string, method: string) => Object.keys(paths[path]?.[method]?.responses ?? {})
    expect(statuses("/api/transfer", "post")).toEqual(
      expect.arrayContaining(["201", "400", "413", "429", "503"]),
    )
    expect(statuses("/api/join", "post")).toEqual(
      expect.arrayContaining(["200", "400", "404", "409", "410", "413", "429", "503"]),
    )
    expect(statuses("/healthz", "get")).toContain("200")
    expect(statuses("/readyz", "get")).toEqual(expect.arrayContaining(["200", "503"]))
  })

  it("answers 404 with an error body to unknown endpoints", async () => {
    const response = await fetch(new URL("/api/nothing", signal.url))
    expect(response.status).toBe(404)
    expect(isApiError(await response.json())).toBe(true)
  })
})

describe("p2pal-signal process", () => {
  it("exits cleanly on SIGTERM and writes nothing else to stdout", async () => {
    const other = await startSignal()
    await createTransfer(other)
    const stopped = await other.stop()
    expect(stopped.code).toBe(0)
    expect(stopped.stdout).toBe(
      `p2pal-signal metrics on ${other.metricsUrl}\np2pal-signal listening on ${other.url}\n`,
    )
  })
})

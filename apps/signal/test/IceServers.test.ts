import { createHmac } from "node:crypto"
import { SignalApi } from "@p2pal/domain"
import { Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { bin, run, signalArgs, start } from "../../../test/support/Processes.js"
import { joinTransfer, postJson, type Signal, startSignal } from "./harness.js"

const Secret = "correct horse battery staple"
const Urls = ["turn:198.51.100.7:3478", "turn:198.51.100.8:3478?transport=udp"]
const DayMs = 24 * 60 * 60 * 1000

let signal: Signal
beforeAll(async () => {
  signal = await startSignal(Urls.flatMap((url) => ["--turn-url", url]).concat("--turn-secret", Secret))
})
afterAll(async () => {
  await signal.stop()
})

/** coturn's use-auth-secret check: the password is base64(HMAC-SHA1(secret, username)). */
const coturnAccepts = (server: SignalApi.IceServer) =>
  server.username !== undefined &&
  server.credential === createHmac("sha1", Secret).update(server.username).digest("base64")

describe("p2pal-signal with --turn-url and --turn-secret", () => {
  it("hands both sides TURN credentials for their transfer that outlive it, and never logs the secret", async () => {
    const created = await postJson(signal, "/api/transfer", { ttlSeconds: 60 })
    const body = Schema.decodeUnknownSync(SignalApi.CreateTransferResponse)(created.body)
    const joined = Schema.decodeUnknownSync(SignalApi.JoinResponse)(
      await joinTransfer(signal, body.nameplate),
    )
    for (const servers of [body.iceServers, joined.iceServers]) {
      expect(servers.map((s) => s.urls)).toEqual(Urls)
      for (const server of servers) {
        expect(coturnAccepts(server)).toBe(true)
        const [expiry, transferId] = server.username!.split(":")
        expect(transferId).toBe(body.transferId)
        // Valid while the transfer can run: the code's deadline plus a day of active transfer.
        expect(Number(expiry) * 1000).toBeGreaterThanOrEqual(body.expiresAt + DayMs)
        expect(Number(expiry) * 1000).toBeLessThan(body.expiresAt + DayMs + 2_000)
      }
    }
    const ended = await signal.stop()
    expect(ended.stderr).not.toContain(Secret)
    expect(ended.stderr).not.toContain(body.iceServers[0]!.credential!)
  })

  it("refuses --turn-url without --turn-secret", async () => {
    const refused = await run(bin("p2pal-signal"), ["--port", "0", "--turn-url", Urls[0]!])
    expect(refused.code).not.toBe(0)
    expect(refused.stdout + refused.stderr).toMatch(/--turn-url and --turn-secret go together/)
  })

  it("takes TURN_URL and TURN_SECRET from the environment, and empty ones as unset (compose's default)", async () => {
    const withEnv = async (env: NodeJS.ProcessEnv) => {
      const app = start(bin("p2pal-signal"), signalArgs(["--port", "0", "--host", "127.0.0.1"]), { env })
      const [, url] = await app.line(/^p2pal-signal listening on (http:\/\/\S+)$/)
      const created = await fetch(new URL("/api/transfer", url), {
        method: "POST",
        body: JSON.stringify({ ttlSeconds: 60 }),
      })
      app.child.kill("SIGTERM")
      await app.finished
      return Schema.decodeUnknownSync(SignalApi.CreateTransferResponse)(await created.json()).iceServers
    }
    const issued = await withEnv({ TURN_URL: Urls.join(","), TURN_SECRET: Secret })
    expect(issued.map((s) => s.urls)).toEqual(Urls)
    expect(issued.every(coturnAccepts)).toBe(true)
    expect(await withEnv({ TURN_URL: "", TURN_SECRET: "" })).toEqual([])
  })
})

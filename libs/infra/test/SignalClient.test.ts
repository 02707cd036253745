import { createServer, type IncomingHttpHeaders, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Nameplate } from "@p2pal/domain/Ids"
import { Effect, Schema } from "effect"
import { SignalClient } from "../src/SignalClient.js"

interface Reply {
  readonly status: number
  readonly headers?: Record<string, string>
  readonly body: string
}

/** A loopback HTTP server that answers every request with `reply`, as a signal app or a proxy in front of one would. */
const serving = (reply: Reply) =>
  Effect.acquireRelease(
    Effect.async<{
      readonly server: Server
      readonly url: string
      readonly asked: Array<IncomingHttpHeaders>
    }>((resume) => {
      const asked: Array<IncomingHttpHeaders> = []
      const server = createServer((request, response) => {
        asked.push(request.headers)
        request.resume().on("end", () => response.writeHead(reply.status, reply.headers).end(reply.body))
      })
      server.listen(0, "127.0.0.1", () =>
        resume(
          Effect.succeed({
            server,
            url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
            asked,
          }),
        ),
      )
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      }),
  )

const json = { "content-type": "application/json" }
const html = { "content-type": "text/html" }
const nameplate = Schema.decodeSync(Nameplate)("42")

/** What `join` fails with against a server giving `reply`. */
const joinFailure = (reply: Reply) =>
  Effect.gen(function* () {
    const { url } = yield* serving(reply)
    return yield* Effect.flip((yield* SignalClient).join(url, { nameplate }))
  }).pipe(Effect.scoped, Effect.provide(SignalClient.Default))

describe("SignalClient", () => {
  it.live("posts JSON and decodes the declared answer, sending no tracing headers", () =>
    Effect.gen(function* () {
      const body = { transferId: "tr_abcdefghijklmnop", token: "t".repeat(32), expiresAt: 1, iceServers: [] }
      const { url, asked } = yield* serving({ status: 200, headers: json, body: JSON.stringify(body) })
      expect(yield* (yield* SignalClient).join(url, { nameplate })).toEqual(body)
      expect(asked[0]?.["content-type"]).toBe("application/json")
      expect(Object.keys(asked[0] ?? {}).filter((name) => /trace|b3/.test(name))).toEqual([])
    }).pipe(Effect.scoped, Effect.provide(SignalClient.Default)),
  )

  it.live.each([
    [404, "not_found"],
    [409, "already_claimed"],
    [410, "expired"],
  ] as const)("takes %i %s as the code rejected", ([status, error]) =>
    Effect.map(joinFailure({ status, headers: json, body: JSON.stringify({ error, message: "m" }) }), (e) =>
      expect(e).toMatchObject({ _tag: "CodeRejected", reason: error }),
    ),
  )

  it.live.each([
    [
      "the server's own refusal: its message",
      { status: 503, headers: json, body: '{"error":"unavailable","message":"shutting down"}' },
      "shutting down",
    ],
    [
      "a 429 by its status and Retry-After, whoever sent it",
      { status: 429, headers: { ...html, "retry-after": "7" }, body: "<h1>slow down</h1>" },
      "the signal server is rate-limiting this address: retry in 7 s",
    ],
    [
      "a 429 without a usable Retry-After",
      { status: 429, headers: { ...json, "retry-after": "soon" }, body: "{}" },
      "the signal server is rate-limiting this address: retry later",
    ],
    ["a proxy's error page by its status", { status: 503, headers: html, body: "<h1>down</h1>" }, "HTTP 503"],
    ["a status the API does not declare", { status: 502, headers: json, body: "{}" }, "HTTP 502"],
    [
      "a success it cannot read",
      { status: 200, headers: json, body: "{}" },
      "the server sent a response p2pal does not understand",
    ],
  ] as const)("reports %s", ([, reply, detail]) =>
    Effect.map(joinFailure(reply), (e) => expect(e).toMatchObject({ _tag: "ServerFailed", detail })),
  )

  it.live("reports a server nobody listens on as unreachable", () =>
    Effect.gen(function* () {
      const { url } = yield* serving({ status: 200, body: "" })
      return url
    }).pipe(
      Effect.scoped,
      Effect.flatMap((closed) =>
        Effect.flip(Effect.flatMap(SignalClient, (client) => client.join(closed, { nameplate }))),
      ),
      Effect.map((e) =>
        expect(e).toMatchObject({
          _tag: "ServerUnreachable",
          detail: expect.stringContaining("ECONNREFUSED"),
        }),
      ),
      Effect.provide(SignalClient.Default),
    ),
  )
})

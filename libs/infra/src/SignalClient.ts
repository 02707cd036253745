import { SignalApi } from "@p2pal/domain"
import { CodeRejected, ServerFailed, ServerUnreachable } from "@p2pal/domain/Errors"
import type { Token } from "@p2pal/domain/Ids"
import { Effect, Schema } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import * as Socket from "./SignalSocket.js"

const RequestTimeoutMs = 15_000

interface Response {
  readonly status: number
  readonly retryAfter: string | undefined
  readonly text: string
}

/**
 * One JSON POST, through node:http rather than fetch: the first fetch of a process loads undici, which
 * cost every command 50-80 ms of its start here.
 */
const request = (url: URL, body: string, signal: AbortSignal) =>
  new Promise<Response>((resolve, reject) => {
    const client = url.protocol === "https:" ? https : http
    const req = client.request(
      url,
      { method: "POST", headers: { "content-type": "application/json" }, signal },
      (res) => {
        let text = ""
        res.setEncoding("utf8")
        res.on("data", (part: string) => (text += part))
        res.on("error", reject)
        res.on("end", () => {
          const retryAfter = res.headers["retry-after"]
          resolve({ status: res.statusCode ?? 0, retryAfter, text })
        })
      },
    )
    req.on("error", reject)
    req.end(body)
  })

const post = <A, I>(server: string, path: string, body: unknown, response: Schema.Schema<A, I>) =>
  Effect.gen(function* () {
    const url = new URL(path, server)
    const res = yield* Effect.tryPromise({
      try: (signal) =>
        request(url, JSON.stringify(body), AbortSignal.any([signal, AbortSignal.timeout(RequestTimeoutMs)])),
      catch: (e) => new ServerUnreachable({ server, detail: causeText(e) }),
    })
    const { text } = res
    const json = Schema.decodeUnknownOption(Schema.parseJson())(text)
    if (res.status >= 200 && res.status < 300) {
      return yield* Schema.decodeUnknown(response)(json._tag === "Some" ? json.value : undefined).pipe(
        Effect.mapError(
          () => new ServerFailed({ server, detail: "the server sent a response p2pal does not understand" }),
        ),
      )
    }
    // Told by its status, not its body: a proxy in front of the server may be the one limiting.
    if (res.status === 429) {
      const seconds = res.retryAfter ?? ""
      const when = /^[0-9]+$/.test(seconds) ? `retry in ${seconds} s` : "retry later"
      return yield* new ServerFailed({
        server,
        detail: `the signal server is rate-limiting this address: ${when}`,
      })
    }
    const error = Schema.decodeUnknownOption(SignalApi.ApiErrorBody)(
      json._tag === "Some" ? json.value : undefined,
    )
    if (error._tag === "Some") {
      const code = error.value.error
      if (code === "not_found" || code === "expired" || code === "already_claimed")
        return yield* new CodeRejected({ reason: code })
      return yield* new ServerFailed({ server, detail: error.value.message })
    }
    return yield* new ServerFailed({ server, detail: `HTTP ${res.status}` })
  })

const causeText = (e: unknown): string => {
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause : e
  return cause instanceof Error ? cause.message : String(cause)
}

export type { Session, SocketChange } from "./SignalSocket.js"

/** The signal app as a client sees it: its HTTP API (create, join) and its WebSocket relay (open). */
export class SignalClient extends Effect.Service<SignalClient>()("@p2pal/infra/SignalClient", {
  succeed: {
    create: Effect.fn("SignalClient.create")(function* (
      server: string,
      request: SignalApi.CreateTransferRequest,
    ) {
      return yield* post(server, "/api/transfer", request, SignalApi.CreateTransferResponse)
    }),
    join: Effect.fn("SignalClient.join")(function* (server: string, request: SignalApi.JoinRequest) {
      return yield* post(server, "/api/join", request, SignalApi.JoinResponse)
    }),
    open: Effect.fn("SignalClient.open")(function* (
      server: string,
      token: Token,
      notify?: (change: Socket.SocketChange) => Effect.Effect<void>,
    ) {
      return yield* Socket.open(server, token, notify)
    }),
  },
}) {}

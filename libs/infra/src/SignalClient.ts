import { HttpApiClient, HttpClient, HttpClientError } from "@effect/platform"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type { SignalApi } from "@p2pal/domain"
import { CodeRejected, ServerFailed, ServerUnreachable } from "@p2pal/domain/Errors"
import type { Token } from "@p2pal/domain/Ids"
import { SignalHttpApi } from "@p2pal/domain/SignalHttpApi"
import { Effect } from "effect"
import * as Socket from "./SignalSocket.js"

const RequestTimeoutMs = 15_000

const clientFor = (httpClient: HttpClient.HttpClient, server: string) =>
  HttpApiClient.makeWith(SignalHttpApi, { httpClient, baseUrl: server })
type Api = Effect.Effect.Success<ReturnType<typeof clientFor>>
/** Every way a call can fail: join's declared errors include create's. */
type Failure = Effect.Effect.Error<ReturnType<Api["join"]>>

const causeText = (e: unknown): string => {
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause : e
  return cause instanceof Error ? cause.message : String(cause)
}

/**
 * Answers told by their status rather than their body: a 429 (a proxy in front of the server may be the
 * one limiting, and its Retry-After says when to retry) and an error that is no JSON (a proxy's page).
 */
const byStatus = (status: number, contentType = "") =>
  status === 429 || (status >= 400 && !contentType.includes("json"))

/** One message and exit code per failure (apps/cli/src/Failure.ts says which). */
const fromFailure =
  (server: string) =>
  (e: Failure): CodeRejected | ServerFailed | ServerUnreachable => {
    switch (e._tag) {
      case "NotFound":
        return new CodeRejected({ reason: "not_found" })
      case "Expired":
        return new CodeRejected({ reason: "expired" })
      case "AlreadyClaimed":
        return new CodeRejected({ reason: "already_claimed" })
      case "RequestError":
        return new ServerUnreachable({ server, detail: causeText(e.cause) })
      case "ResponseError": {
        const { status, headers } = e.response
        if (status === 429) {
          const seconds = headers["retry-after"] ?? ""
          const when = /^[0-9]+$/.test(seconds) ? `retry in ${seconds} s` : "retry later"
          return new ServerFailed({
            server,
            detail: `the signal server is rate-limiting this address: ${when}`,
          })
        }
        // A cause is a body that could not be read; without one, a status the API does not declare.
        return e.cause === undefined
          ? new ServerFailed({ server, detail: `HTTP ${status}` })
          : new ServerUnreachable({ server, detail: causeText(e.cause) })
      }
      case "ParseError":
        return new ServerFailed({ server, detail: "the server sent a response p2pal does not understand" })
      default:
        return new ServerFailed({ server, detail: e.message })
    }
  }

export type { Session, SocketChange } from "./SignalSocket.js"

/**
 * The signal app as a client sees it: its HTTP API (create, join; derived from SignalHttpApi) and its
 * WebSocket relay (open). HTTP goes through node:http, not fetch: the first fetch of a process loads
 * undici, which cost every command 50-80 ms of its start here.
 */
export class SignalClient extends Effect.Service<SignalClient>()("@p2pal/infra/SignalClient", {
  effect: Effect.gen(function* () {
    const httpClient = (yield* HttpClient.HttpClient).pipe(
      HttpClient.withTracerPropagation(false),
      HttpClient.filterOrFail(
        (response) => !byStatus(response.status, response.headers["content-type"]),
        (response) =>
          new HttpClientError.ResponseError({ request: response.request, response, reason: "StatusCode" }),
      ),
    )
    const call = <A>(
      server: string,
      request: (api: Effect.Effect.Success<ReturnType<typeof clientFor>>) => Effect.Effect<A, Failure>,
    ) =>
      Effect.flatMap(clientFor(httpClient, server), request).pipe(
        Effect.mapError(fromFailure(server)),
        Effect.timeoutFail({
          duration: RequestTimeoutMs,
          onTimeout: () =>
            new ServerUnreachable({ server, detail: "The operation was aborted due to timeout" }),
        }),
      )
    return {
      create: Effect.fn("SignalClient.create")(function* (
        server: string,
        request: SignalApi.CreateTransferRequest,
      ) {
        return yield* call(server, (api) => api.create({ payload: request }))
      }),
      join: Effect.fn("SignalClient.join")(function* (server: string, request: SignalApi.JoinRequest) {
        return yield* call(server, (api) => api.join({ payload: request }))
      }),
      open: Effect.fn("SignalClient.open")(function* (
        server: string,
        token: Token,
        notify?: (change: Socket.SocketChange) => Effect.Effect<void>,
      ) {
        return yield* Socket.open(server, token, notify)
      }),
    }
  }),
  dependencies: [NodeHttpClient.layer],
}) {}

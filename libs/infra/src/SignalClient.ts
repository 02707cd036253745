import { SignalApi } from "@p2pal/domain"
import { CodeRejected, PeerFailed, ServerFailed, ServerUnreachable } from "@p2pal/domain/Errors"
import type { Token } from "@p2pal/domain/Ids"
import { Context, Effect, Exit, Layer, Mailbox, Option, Schema, Scope } from "effect"
import WebSocket from "ws"

type ApiError = CodeRejected | ServerUnreachable | ServerFailed

/** A signaling socket: what the server relays to us, and a way to talk back. */
export interface Session {
  readonly send: (message: SignalApi.ClientMessage) => Effect.Effect<void, PeerFailed>
  /** The next message, in order; None once the socket has closed. */
  readonly next: Effect.Effect<Option.Option<SignalApi.ServerMessage>>
}

const RequestTimeoutMs = 15_000

const post = <A, I>(server: string, path: string, body: unknown, response: Schema.Schema<A, I>) =>
  Effect.gen(function* () {
    const url = new URL(path, server)
    const res = yield* Effect.tryPromise({
      try: (signal) =>
        fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.any([signal, AbortSignal.timeout(RequestTimeoutMs)]),
        }),
      catch: (e) => new ServerUnreachable({ server, detail: causeText(e) }),
    })
    const text = yield* Effect.tryPromise({
      try: () => res.text(),
      catch: (e) => new ServerUnreachable({ server, detail: causeText(e) }),
    })
    const json = Schema.decodeUnknownOption(Schema.parseJson())(text)
    if (res.ok) {
      return yield* Schema.decodeUnknown(response)(json._tag === "Some" ? json.value : undefined).pipe(
        Effect.mapError(
          () => new ServerFailed({ server, detail: "the server sent a response p2pal does not understand" }),
        ),
      )
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

const open = (server: string, token: Token) =>
  Effect.gen(function* () {
    const url = new URL("/api/ws", server)
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
    url.searchParams.set("token", token)
    const inbox = yield* Mailbox.make<SignalApi.ServerMessage>()
    const ws = yield* Effect.acquireRelease(
      Effect.async<WebSocket, ServerUnreachable>((resume) => {
        const ws = new WebSocket(url, {
          maxPayload: SignalApi.MaxSocketMessageBytes,
          handshakeTimeout: RequestTimeoutMs,
        })
        ws.once("open", () => resume(Effect.succeed(ws)))
        ws.once("error", (e) => resume(Effect.fail(new ServerUnreachable({ server, detail: e.message }))))
        ws.once("unexpected-response", (_req, res) =>
          resume(
            Effect.fail(
              new ServerUnreachable({ server, detail: `WebSocket refused (HTTP ${res.statusCode})` }),
            ),
          ),
        )
      }),
      (ws) => Effect.sync(() => ws.close(1000)),
    )
    ws.on("message", (data, isBinary) => {
      if (isBinary) return
      const decoded = Schema.decodeUnknownOption(SignalApi.ServerMessageFromJson)(data.toString())
      if (decoded._tag === "Some") inbox.unsafeOffer(decoded.value)
    })
    ws.on("close", () => inbox.unsafeDone(Exit.void))
    ws.on("error", () => inbox.unsafeDone(Exit.void))
    const session: Session = {
      send: (message) =>
        Effect.async<void, PeerFailed>((resume) => {
          ws.send(Schema.encodeSync(SignalApi.ClientMessageFromJson)(message), (err) =>
            resume(
              err
                ? Effect.fail(new PeerFailed({ message: `lost the signal server: ${err.message}` }))
                : Effect.void,
            ),
          )
        }),
      next: inbox.take.pipe(Effect.asSome, Effect.orElseSucceed(Option.none)),
    }
    return session
  })

export class SignalClient extends Context.Tag("@p2pal/infra/SignalClient")<
  SignalClient,
  {
    readonly create: (
      server: string,
      request: SignalApi.CreateTransferRequest,
    ) => Effect.Effect<SignalApi.CreateTransferResponse, ApiError>
    readonly join: (
      server: string,
      request: SignalApi.JoinRequest,
    ) => Effect.Effect<SignalApi.JoinResponse, ApiError>
    readonly open: (server: string, token: Token) => Effect.Effect<Session, ServerUnreachable, Scope.Scope>
  }
>() {
  static readonly layer = Layer.succeed(SignalClient, {
    create: (server, request) => post(server, "/api/transfer", request, SignalApi.CreateTransferResponse),
    join: (server, request) => post(server, "/api/join", request, SignalApi.JoinResponse),
    open,
  })
}

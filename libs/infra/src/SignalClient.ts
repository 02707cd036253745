import { SignalApi } from "@p2pal/domain"
import { CodeRejected, PeerFailed, ServerFailed, ServerUnreachable } from "@p2pal/domain/Errors"
import type { Token } from "@p2pal/domain/Ids"
import { Context, Effect, Exit, Layer, Mailbox, Option, Schema, Scope } from "effect"
import WebSocket from "ws"

type ApiError = CodeRejected | ServerUnreachable | ServerFailed

/** A signaling socket: what the server relays to us, and a way to talk back. */
export interface Session {
  readonly send: (message: SignalApi.ClientMessage) => Effect.Effect<void, PeerFailed>
  /**
   * The next message, in order. Once the socket has closed and every message before was taken: None after
   * a normal close or once the peer has shown up (`peer-joined` or its first signal); otherwise it fails
   * with what the server's close code says.
   */
  readonly next: Effect.Effect<Option.Option<SignalApi.ServerMessage>, CodeRejected | ServerFailed>
}

/** Why the server ended a session before the peers found each other. */
type SessionError = CodeRejected | ServerFailed

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

/** What a close code means for a session the server ended before the peers found each other. */
const refusal = (server: string, code: number, reason: string, lastError: string): SessionError => {
  switch (code) {
    case SignalApi.CloseCode.expired:
      return new CodeRejected({ reason: "expired" })
    case SignalApi.CloseCode.notFound:
      return new CodeRejected({ reason: "not_found" })
    case SignalApi.CloseCode.conflict:
      return new CodeRejected({ reason: "already_claimed" })
    default: {
      // 1006: no close frame at all, so the socket's own error says more than the empty reason.
      const why = reason !== "" ? reason : lastError !== "" ? lastError : "connection closed"
      return new ServerFailed({ server, detail: `${code} ${why}` })
    }
  }
}

/** Waits for the handshake; interruptible, and the listeners go when it ends either way. */
const opened = (ws: WebSocket, server: string) =>
  Effect.async<void, ServerUnreachable>((resume) => {
    const settle = (result: Effect.Effect<void, ServerUnreachable>) => {
      stop()
      resume(result)
    }
    const onOpen = () => settle(Effect.void)
    const onError = (e: Error) => settle(Effect.fail(new ServerUnreachable({ server, detail: e.message })))
    const onResponse = (_req: unknown, res: { readonly statusCode?: number | undefined }) =>
      settle(
        Effect.fail(new ServerUnreachable({ server, detail: `WebSocket refused (HTTP ${res.statusCode})` })),
      )
    const stop = () => {
      ws.off("open", onOpen)
      ws.off("error", onError)
      ws.off("unexpected-response", onResponse)
    }
    ws.on("open", onOpen)
    ws.on("error", onError)
    ws.on("unexpected-response", onResponse)
    return Effect.sync(stop)
  })

const open = (server: string, token: Token) =>
  Effect.gen(function* () {
    const url = new URL("/api/ws", server)
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
    url.searchParams.set("token", token)
    const inbox = yield* Mailbox.make<SignalApi.ServerMessage, SessionError>()
    // The socket exists at once and the scope owns it; only the wait for "open" takes time, and it is
    // interruptible, so Ctrl+C during the handshake does not wait for the handshake timeout.
    const ws = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new WebSocket(url, {
            maxPayload: SignalApi.MaxSocketMessageBytes,
            handshakeTimeout: RequestTimeoutMs,
          }),
      ),
      (ws) =>
        Effect.sync(() =>
          ws.readyState === WebSocket.CONNECTING ? ws.terminate() : ws.close(SignalApi.CloseCode.normal),
        ),
    )
    let peerSeen = false
    let lastError = ""
    // Always listened to: an "error" nobody handles would throw; a "close" follows every one.
    ws.on("error", (e) => {
      lastError = e.message
    })
    ws.on("message", (data, isBinary) => {
      if (isBinary) return
      const decoded = Schema.decodeUnknownOption(SignalApi.ServerMessageFromJson)(data.toString())
      if (decoded._tag === "None") return
      if (decoded.value._tag !== "peer-left") peerSeen = true
      inbox.unsafeOffer(decoded.value)
    })
    ws.on("close", (code, reason) =>
      inbox.unsafeDone(
        code === SignalApi.CloseCode.normal || peerSeen
          ? Exit.void
          : Exit.fail(refusal(server, code, reason.toString(), lastError)),
      ),
    )
    yield* opened(ws, server)
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
      next: inbox.take.pipe(
        Effect.asSome,
        Effect.catchTag("NoSuchElementException", () => Effect.succeedNone),
      ),
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

import { SignalApi } from "@p2pal/domain"
import { CodeRejected, PeerFailed, ServerFailed, ServerUnreachable } from "@p2pal/domain/Errors"
import type { Token } from "@p2pal/domain/Ids"
import { Deferred, Duration, Effect, Exit, Mailbox, Option, Ref, Schedule, Schema, Scope } from "effect"
import WebSocket from "ws"
import { type Closed, closeText, Reconnectable, refusal, type SessionError } from "./SocketClose.js"

/** A signaling socket: what the server relays to us, and a way to talk back. */
export interface Session {
  readonly send: (message: SignalApi.ClientMessage) => Effect.Effect<void, PeerFailed>
  /**
   * The next message, in order. Once the socket has closed and every message before was taken: None after
   * a normal close or once the peer has shown up (`peer-joined` or its first signal); otherwise it fails
   * with what the server's close code says.
   */
  readonly next: Effect.Effect<Option.Option<SignalApi.ServerMessage>, CodeRejected | ServerFailed>
  /**
   * Drops the socket and opens a new one that carries on after the last message seen: after a network
   * drop the old one may sit in TCP's retransmission backoff for long after the path is back.
   */
  readonly refresh: Effect.Effect<void>
}

/**
 * What the user should hear about the socket before the peers have met: the server went away and is
 * tried again for `retryFor`, or it is back. (After they met it comes and goes unnoticed: the files
 * travel peer to peer.)
 */
export type SocketChange =
  | { readonly _tag: "lost"; readonly why: string; readonly retryFor: Duration.Duration }
  | { readonly _tag: "back" }

/** How long the first handshake may take (a reconnect's is `ReconnectHandshakeMs`). */
const HandshakeTimeoutMs = 15_000

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

/** How long a server that went away before the peers met is tried again. */
const RetryFor = Duration.seconds(30)

/** Quick first tries (an instance restarts in seconds), then every few seconds, for at most RetryFor. */
const ReconnectSchedule = Schedule.exponential("250 millis").pipe(
  Schedule.union(Schedule.spaced("4 seconds")),
  Schedule.jittered,
  Schedule.upTo(RetryFor),
)

/**
 * Once the peers have met, the socket is how they find each other again after a network drop, so it is
 * retried for as long as the session lives (the transfer's own retry limits end it), and often: a new
 * path is noticed within a couple of seconds.
 */
const KeepTrying = Schedule.exponential("250 millis").pipe(
  Schedule.union(Schedule.spaced("2 seconds")),
  Schedule.jittered,
)

/** A server that answered before answers quickly: a reconnect that takes longer is tried afresh. */
const ReconnectHandshakeMs = 5_000

/**
 * Opens a signaling socket that reconnects by itself after a drop; it lives as long as the scope.
 * `notify` hears of a server that went away (and came back) before the peers met.
 */
export const open = (
  server: string,
  token: Token,
  notify: (change: SocketChange) => Effect.Effect<void> = () => Effect.void,
) =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const inbox = yield* Mailbox.make<SignalApi.ServerMessage, SessionError>()
    let lastId: SignalApi.MessageId | undefined
    let peerSeen = false
    /** The socket open now, if any. */
    let live: WebSocket | undefined

    /** One socket, open, in the session's scope; `closed` completes when it closes. */
    const connect = Effect.gen(function* () {
      const url = new URL("/api/ws", server)
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
      url.searchParams.set("token", token)
      if (lastId !== undefined) url.searchParams.set("after", lastId)
      // The socket exists at once and the scope owns it; only the wait for "open" takes time, and it is
      // interruptible, so Ctrl+C during the handshake does not wait for the handshake timeout.
      const ws = yield* Effect.acquireRelease(
        Effect.sync(
          () =>
            new WebSocket(url, {
              maxPayload: SignalApi.MaxSocketMessageBytes,
              handshakeTimeout: lastId === undefined ? HandshakeTimeoutMs : ReconnectHandshakeMs,
            }),
        ),
        (ws) =>
          Effect.sync(() =>
            ws.readyState === WebSocket.CONNECTING ? ws.terminate() : ws.close(SignalApi.CloseCode.normal),
          ),
      ).pipe(Scope.extend(scope))
      let lastError = ""
      // Always listened to: an "error" nobody handles would throw; a "close" follows every one.
      ws.on("error", (e) => {
        lastError = e.message
      })
      ws.on("message", (data, isBinary) => {
        if (isBinary) return
        const decoded = Schema.decodeUnknownOption(SignalApi.ServerFrameFromJson)(data.toString())
        if (decoded._tag === "None") return
        const { id, ...message } = decoded.value
        lastId = id
        // A claim alone is not the peer: anyone who knows the nameplate can make one.
        if (message._tag !== "peer-left" && message._tag !== "peer-claimed") peerSeen = true
        inbox.unsafeOffer(message)
      })
      const closed = yield* Deferred.make<Closed>()
      ws.on("close", (code, reason) =>
        Deferred.unsafeDone(closed, Exit.succeed({ code, reason: reason.toString(), lastError })),
      )
      yield* opened(ws, server)
      live = ws
      return { ws, closed: Deferred.await(closed) }
    })

    const first = yield* connect
    // What `send` writes to; replaced by a pending one while reconnecting.
    const current = yield* Ref.make(yield* Deferred.make<WebSocket, PeerFailed>())
    yield* Deferred.succeed(yield* Ref.get(current), first.ws)

    const lost = (closed: Closed, error = refusal(server, closed.code, closed.reason, closed.lastError)) =>
      Effect.gen(function* () {
        yield* Deferred.fail(
          yield* Ref.get(current),
          new PeerFailed({
            message: `lost the signal server (${closed.code} ${closed.reason || closed.lastError})`,
          }),
        )
        inbox.unsafeDone(
          closed.code === SignalApi.CloseCode.normal || peerSeen ? Exit.void : Exit.fail(error),
        )
      })

    /** What `send` waits for while there is no socket: the pending one, made now if need be. */
    const pending = Effect.gen(function* () {
      const now = yield* Ref.get(current)
      if (!(yield* Deferred.isDone(now))) return now
      const next = yield* Deferred.make<WebSocket, PeerFailed>()
      yield* Ref.set(current, next)
      return next
    })

    const follow = (connection: Effect.Effect.Success<typeof connect>): Effect.Effect<void> =>
      Effect.gen(function* () {
        const closed = yield* connection.closed
        if (!Reconnectable.has(closed.code)) return yield* lost(closed)
        const waiting = yield* pending
        const told = !peerSeen
        if (told) yield* notify({ _tag: "lost", why: closeText(closed), retryFor: RetryFor })
        const next = yield* Effect.suspend(() =>
          connect.pipe(Effect.retry(peerSeen ? KeepTrying : ReconnectSchedule)),
        ).pipe(Effect.option)
        if (Option.isNone(next))
          return yield* lost(
            closed,
            new ServerFailed({
              server,
              detail: `it went away and did not come back within ${Duration.format(RetryFor)} (${closeText(closed)})`,
            }),
          )
        if (told) yield* notify({ _tag: "back" })
        yield* Deferred.succeed(waiting, next.value.ws)
        return yield* follow(next.value)
      })
    yield* Effect.forkScoped(follow(first))

    const session: Session = {
      send: (message) =>
        Ref.get(current).pipe(
          Effect.flatMap(Deferred.await),
          Effect.flatMap((ws) =>
            Effect.async<void, PeerFailed>((resume) => {
              ws.send(Schema.encodeSync(SignalApi.ClientMessageFromJson)(message), (err) =>
                resume(
                  err
                    ? Effect.fail(new PeerFailed({ message: `lost the signal server: ${err.message}` }))
                    : Effect.void,
                ),
              )
            }),
          ),
        ),
      next: inbox.take.pipe(
        Effect.asSome,
        Effect.catchTag("NoSuchElementException", () => Effect.succeedNone),
      ),
      refresh: Effect.gen(function* () {
        const socket = live
        if (socket === undefined || socket.readyState !== WebSocket.OPEN) return
        live = undefined
        // Sends wait from here on, so none goes into the socket being dropped.
        yield* pending
        // No close handshake over a path that may be dead: 1006, which `follow` reconnects after.
        socket.terminate()
      }),
    }
    return session
  })

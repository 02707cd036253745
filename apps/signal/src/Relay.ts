import { HttpServerRequest, HttpServerResponse, Socket } from "@effect/platform"
import { Ids, SignalApi } from "@p2pal/domain"
import * as Excerpt from "@p2pal/domain/Excerpt"
import { ActiveLeaseMs, TransferStore } from "@p2pal/infra/TransferStore"
import type * as Store from "@p2pal/infra/TransferStore"
import { Data, Effect, Fiber, Mailbox, Option, Schema, Stream } from "effect"
import { ApiFailure, errorResponse, parseErrorText } from "./Api.js"
import { Shutdown } from "./Shutdown.js"

/** Frames read from a client but not yet relayed; a client that outruns the store is cut off. */
const FrameBacklog = 64
/** How long a socket may stay open before its token is checked. */
const AuthenticateTimeout = "5 seconds"
/** The WebSocket protocol caps a close reason at 123 bytes. */
const MaxCloseReasonBytes = 123

/** Ends a session with this close code, the client's only way to learn what went wrong. */
class Close extends Data.TaggedError("Close")<{ readonly code: number; readonly reason: string }> {}

type StoreError =
  Store.TransferNotFound | Store.Rejected | Store.Unauthorized | Store.MailboxFull | Store.StoreUnavailable

const { CloseCode } = SignalApi

const fromStore = (e: StoreError): Close => {
  switch (e._tag) {
    case "Unauthorized":
      return new Close({ code: CloseCode.unauthorized, reason: "unknown token" })
    case "TransferNotFound":
      return new Close({ code: CloseCode.notFound, reason: "transfer not found" })
    case "TransferExpired":
      return new Close({ code: CloseCode.expired, reason: "transfer expired" })
    case "TransferEnded":
      return new Close({ code: CloseCode.ended, reason: `transfer ${e.status}` })
    case "AlreadyClaimed":
      return new Close({ code: CloseCode.conflict, reason: "transfer already claimed" })
    case "TransitionNotAllowed":
      return new Close({
        code: CloseCode.notAllowed,
        reason: `a ${e.status} transfer does not accept ${e.event}`,
      })
    case "MailboxFull":
      return new Close({
        code: CloseCode.policyViolation,
        reason: "the peer is not reading: too many undelivered messages",
      })
    case "StoreUnavailable":
      return new Close({ code: CloseCode.tryAgainLater, reason: "store unavailable: retry later" })
  }
}

const decoder = new TextDecoder()

const closeEvent = ({ code, reason }: Close) =>
  new Socket.CloseEvent(code, decoder.decode(Excerpt.utf8Prefix(reason, MaxCloseReasonBytes)))

const encode = Schema.encodeSync(SignalApi.ServerMessageFromJson)
const encodeFrame = Schema.encodeSync(SignalApi.ServerFrameFromJson)
const decodeAfter = Schema.decodeUnknownOption(SignalApi.MessageId)
const decodeFrame = Schema.decodeUnknown(SignalApi.ClientMessageFromJson)
const decodeToken = Schema.decodeUnknownOption(Ids.Token)
/** Stored messages were encoded by this app, so they decode. */
const decodeStored = Schema.decodeSync(SignalApi.ServerMessageFromJson)

const parseFrame = (frame: string | Uint8Array) => {
  if (typeof frame !== "string")
    return Effect.fail(new Close({ code: CloseCode.badMessage, reason: "binary frames are not accepted" }))
  if (Buffer.byteLength(frame) > SignalApi.MaxSocketMessageBytes)
    return Effect.fail(
      new Close({
        code: CloseCode.tooBig,
        reason: `message exceeds ${SignalApi.MaxSocketMessageBytes} bytes`,
      }),
    )
  return decodeFrame(frame).pipe(
    Effect.mapError(
      (e) => new Close({ code: CloseCode.badMessage, reason: `bad message: ${parseErrorText(e)}` }),
    ),
  )
}

/**
 * One side's socket after authentication. Everything addressed to a side, including `peer-joined` and
 * `peer-left`, goes through that side's mailbox in the store, so it arrives in order and waits for a side
 * that connects later (or to another instance sharing the store).
 */
const session = (
  token: string | undefined,
  after: string | undefined,
  frames: Mailbox.ReadonlyMailbox<string | Uint8Array, Socket.SocketError>,
  write: (message: string) => Effect.Effect<void, Socket.SocketError>,
) =>
  Effect.gen(function* () {
    const store = yield* TransferStore
    const valid = Option.fromNullable(token).pipe(Option.flatMap(decodeToken))
    if (Option.isNone(valid))
      return yield* new Close({ code: CloseCode.unauthorized, reason: "missing or malformed token" })
    const resumeAfter = after === undefined ? Option.none() : decodeAfter(after)
    if (after !== undefined && Option.isNone(resumeAfter))
      return yield* new Close({
        code: CloseCode.badMessage,
        reason: "malformed after: expected a message id",
      })
    const { transferId, side } = yield* store.authenticate(valid.value).pipe(
      // A socket is open from the upgrade on: one whose token the store cannot check soon is not kept.
      Effect.timeoutFail({
        duration: AuthenticateTimeout,
        onTimeout: () => new Close({ code: CloseCode.tryAgainLater, reason: "authentication timed out" }),
      }),
    )
    const peer = side === "sender" ? "receiver" : "sender"
    const tell = (to: Ids.Side, message: SignalApi.ServerMessage) =>
      store.post(transferId, to, encode(message))

    // A socket that resumes is the same side coming back, not a new arrival.
    if (side === "receiver" && Option.isNone(resumeAfter)) {
      yield* store.transition(transferId, { _tag: "Activate", leaseMs: ActiveLeaseMs })
      yield* tell("sender", { _tag: "peer-joined" })
    }

    const handle = (message: SignalApi.ClientMessage) => {
      switch (message._tag) {
        case "signal":
          return tell(peer, message)
        case "complete":
          return store.transition(transferId, { _tag: "Complete" }).pipe(
            Effect.catchIf(
              (e) => e._tag === "TransferEnded" && e.status === "completed",
              () => Effect.void,
            ),
          )
        case "abort":
          return Effect.zipRight(
            tell(peer, { _tag: "peer-left", reason: message.reason }),
            store.transition(transferId, { _tag: "Abort" }),
          )
      }
    }
    // A socket that closes abnormally has still left: the frames it sent before are relayed first.
    const relayFrames = Mailbox.toStream(frames).pipe(
      Stream.catchAll(() => Stream.empty),
      Stream.runForEach((frame) => Effect.flatMap(parseFrame(frame), handle)),
    )
    const deliver = Stream.runForEach(
      store.inbox(transferId, side, Option.getOrUndefined(resumeAfter)),
      (d) => write(encodeFrame({ ...decodeStored(d.message), id: d.id })),
    ).pipe(
      Effect.zipRight(new Close({ code: CloseCode.expired, reason: "transfer is gone" })),
      Effect.catchTag("SocketError", () => Effect.void),
    )
    // The instance going away is not the peer leaving: the client comes back through another instance.
    const shutdown = yield* Shutdown
    const goingAway = Effect.zipRight(
      shutdown.begun,
      new Close({ code: CloseCode.goingAway, reason: "server shutting down: reconnect" }),
    )
    const relayed = Effect.raceFirst(relayFrames, deliver).pipe(
      Effect.ensuring(
        Effect.unlessEffect(
          Effect.ignore(tell(peer, { _tag: "peer-left", reason: "disconnected" })),
          shutdown.isBegun,
        ),
      ),
    )
    yield* Effect.raceFirst(relayed, goingAway)
  }).pipe(Effect.mapError((e) => (e._tag === "Close" ? e : fromStore(e))))

/** `GET /api/ws?token=...`: relays signaling between the two sides of one transfer. */
export const relay = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const socket = yield* request.upgrade.pipe(
    Effect.mapError(() => new ApiFailure({ error: "bad_request", message: "expected a WebSocket upgrade" })),
  )
  const write = yield* socket.writer
  const frames = yield* Mailbox.make<string | Uint8Array, Socket.SocketError>(FrameBacklog)
  const overrun = closeEvent(
    new Close({ code: CloseCode.policyViolation, reason: "too many messages in flight" }),
  )
  // Closing needs the reader running, so it starts before anything can fail.
  const reader = yield* socket
    .runRaw((frame) => (frames.unsafeOffer(frame) ? undefined : write(overrun)))
    .pipe(Mailbox.into(frames), Effect.forkScoped)
  const params = yield* HttpServerRequest.ParsedSearchParams
  const param = (name: string) => {
    const value = params[name]
    return typeof value === "string" ? value : undefined
  }
  yield* session(param("token"), param("after"), frames, write).pipe(
    Effect.catchTag("Close", (close) => write(closeEvent(close))),
    Effect.catchTag("SocketError", () => Effect.void),
  )
  yield* Fiber.await(reader)
  // What the client got was the upgrade; the request log says so.
  return HttpServerResponse.empty({ status: 101 })
}).pipe(
  (relay) => Effect.flatMap(Shutdown, (shutdown) => shutdown.hold(relay)),
  Effect.catchTag("ApiFailure", errorResponse),
  Effect.scoped,
)

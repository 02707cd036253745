import { Schema } from "effect"
import { Nameplate, Token, TransferId } from "./Ids.js"

/** Caps on everything the signal app accepts, so a hostile client cannot make it buffer without bound. */
export const MaxRequestBodyBytes = 4 * 1024
export const MaxSocketMessageBytes = 64 * 1024
/** Signaling payloads are opaque to the server (SecureSignal in libs/transfer seals them end to end); this bounds one of them. */
export const MaxSignalDataChars = 48 * 1024
export const MinTtlSeconds = 1
export const MaxTtlSeconds = 24 * 60 * 60

export const IceServer = Schema.Struct({
  urls: Schema.String,
  username: Schema.optional(Schema.String),
  credential: Schema.optional(Schema.String),
})
export type IceServer = typeof IceServer.Type

export const CreateTransferRequest = Schema.Struct({
  ttlSeconds: Schema.Int.pipe(Schema.between(MinTtlSeconds, MaxTtlSeconds)),
})
export type CreateTransferRequest = typeof CreateTransferRequest.Type

export const CreateTransferResponse = Schema.Struct({
  nameplate: Nameplate,
  transferId: TransferId,
  token: Token,
  expiresAt: Schema.Number,
  iceServers: Schema.Array(IceServer),
})
export type CreateTransferResponse = typeof CreateTransferResponse.Type

export const JoinRequest = Schema.Struct({ nameplate: Nameplate })
export type JoinRequest = typeof JoinRequest.Type

export const JoinResponse = Schema.Struct({
  transferId: TransferId,
  token: Token,
  expiresAt: Schema.Number,
  iceServers: Schema.Array(IceServer),
})
export type JoinResponse = typeof JoinResponse.Type

/** Machine-readable reasons in error bodies; clients map them to messages and exit codes. */
export const ApiErrorCode = Schema.Literal(
  "bad_request",
  "not_found",
  "expired",
  "already_claimed",
  "unauthorized",
  "payload_too_large",
  /** Too many requests from this client address; the response's Retry-After says when to try again. */
  "rate_limited",
  "unavailable",
)
export type ApiErrorCode = typeof ApiErrorCode.Type

export const ApiErrorBody = Schema.Struct({ error: ApiErrorCode, message: Schema.String })
export type ApiErrorBody = typeof ApiErrorBody.Type

/** Relayed verbatim to the other side; the server never parses `data`. */
export const SignalMessage = Schema.TaggedStruct("signal", {
  data: Schema.String.pipe(Schema.maxLength(MaxSignalDataChars)),
})

/**
 * Why a side stops for good, as it tells the other through the relay. Data, not prose: each client turns
 * it into its own words, so rewording a message can never change how the other side ends.
 */
export const AbortReason = Schema.Literal(
  /** The PAKE failed: the receiver's code did not match; the code is burned. */
  "wrong-code",
  /** The PAKE or a sealed message was altered on the way. */
  "tampered",
  /** The user stopped it (Ctrl+C). */
  "stopped",
  /** It gave up reconnecting. */
  "gave-up",
  /** It stopped on an error of its own (a full disk, a bad hash), which stays with it. */
  "failed",
  /** The sender voided the code after a claim that did not prove the words, and made a new one. */
  "code-voided",
)
export type AbortReason = typeof AbortReason.Type

export const ClientMessage = Schema.Union(
  SignalMessage,
  Schema.TaggedStruct("complete", {}),
  Schema.TaggedStruct("abort", { reason: AbortReason }),
)
export type ClientMessage = typeof ClientMessage.Type

/**
 * Why the relay says the other side left: its `abort`, or "disconnected" when its socket closed without
 * one (its network may have dropped, and it may come back on a new socket).
 */
export const PeerLeftReason = Schema.Literal(...AbortReason.literals, "disconnected")
export type PeerLeftReason = typeof PeerLeftReason.Type

export const ServerMessage = Schema.Union(
  SignalMessage,
  /**
   * Sent to the sender when a receiver claims the nameplate (POST /api/join). Knowing the nameplate is
   * enough for that, so the sender watches whether the socket and the PAKE follow.
   */
  Schema.TaggedStruct("peer-claimed", {}),
  /** Sent to the sender once a receiver has joined and connected its socket. */
  Schema.TaggedStruct("peer-joined", {}),
  Schema.TaggedStruct("peer-left", { reason: PeerLeftReason }),
)
export type ServerMessage = typeof ServerMessage.Type

/**
 * Where a message sits in its mailbox (a Redis stream id, or a counter in memory): opaque to clients,
 * which hand the last one they saw back as `?after=` when they reconnect.
 */
export const MessageId = Schema.String.pipe(
  Schema.pattern(/^[0-9]{1,20}(-[0-9]{1,20})?$/),
  Schema.brand("MessageId"),
)
export type MessageId = typeof MessageId.Type

/** What the relay writes: a server message and its mailbox id. */
export const ServerFrame = Schema.extend(ServerMessage, Schema.Struct({ id: MessageId }))
export type ServerFrame = typeof ServerFrame.Type

export const ClientMessageFromJson = Schema.parseJson(ClientMessage)
export const ServerMessageFromJson = Schema.parseJson(ServerMessage)
export const ServerFrameFromJson = Schema.parseJson(ServerFrame)

/** WebSocket close codes the signal app uses (4000-4999 is the application range). */
export const CloseCode = {
  normal: 1000,
  policyViolation: 1008,
  tooBig: 1009,
  /** The instance is shutting down: reconnect (to another instance) and resume after the last id. */
  goingAway: 1001,
  tryAgainLater: 1013,
  badMessage: 4400,
  unauthorized: 4401,
  notFound: 4404,
  /** The code was claimed by another receiver. */
  conflict: 4409,
  expired: 4410,
  /** The transfer was completed or aborted; a reason says which. */
  ended: 4411,
  /** The client asked for something its transfer's state does not allow (e.g. complete before a peer). */
  notAllowed: 4412,
} as const

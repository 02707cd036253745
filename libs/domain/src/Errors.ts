import { Schema } from "effect"

/** Everything that can end a p2pal command. The CLI maps each to one message and exit code. */

export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String,
}) {}

export class CodeRejected extends Schema.TaggedError<CodeRejected>()("CodeRejected", {
  reason: Schema.Literal("not_found", "expired", "already_claimed"),
}) {}

export class ServerUnreachable extends Schema.TaggedError<ServerUnreachable>()("ServerUnreachable", {
  server: Schema.String,
  detail: Schema.String,
}) {}

export class ServerFailed extends Schema.TaggedError<ServerFailed>()("ServerFailed", {
  server: Schema.String,
  detail: Schema.String,
}) {}

export class PeerFailed extends Schema.TaggedError<PeerFailed>()("PeerFailed", {
  message: Schema.String,
}) {}

export class IntegrityFailed extends Schema.TaggedError<IntegrityFailed>()("IntegrityFailed", {
  path: Schema.String,
}) {}

export class LocalIoFailed extends Schema.TaggedError<LocalIoFailed>()("LocalIoFailed", {
  path: Schema.String,
  message: Schema.String,
}) {}

/**
 * The PAKE's key confirmation or a sealed signaling message failed: either the receiver typed a wrong
 * code, or something between the peers (the signal server, the network) altered what they exchanged.
 */
export class CodeMismatch extends Schema.TaggedError<CodeMismatch>()("CodeMismatch", {
  side: Schema.Literal("sender", "receiver"),
  cause: Schema.Literal("wrong-code", "tampered"),
}) {}

export class Declined extends Schema.TaggedError<Declined>()("Declined", {}) {}

export const TransferError = Schema.Union(
  UsageError,
  CodeRejected,
  ServerUnreachable,
  ServerFailed,
  PeerFailed,
  IntegrityFailed,
  LocalIoFailed,
  CodeMismatch,
  Declined,
)
export type TransferError = typeof TransferError.Type
export const isTransferError = Schema.is(TransferError)

import { Schema } from "effect"
import { Direction } from "./Checkpoint.js"

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
  /**
   * The connection went away (the peer quit, crashed or the network dropped): what arrived is sound
   * and a resume can build on it. Unset for a peer that broke the protocol or sent bad data.
   */
  lost: Schema.optional(Schema.Boolean),
}) {}

export class IntegrityFailed extends Schema.TaggedError<IntegrityFailed>()("IntegrityFailed", {
  path: Schema.String,
  /** Its bytes went to stdout as they came (`recv --out -`): nothing could keep them back. */
  toStdout: Schema.optional(Schema.Boolean),
}) {}

export class LocalIoFailed extends Schema.TaggedError<LocalIoFailed>()("LocalIoFailed", {
  path: Schema.String,
  message: Schema.String,
  /** The disk was full (or the quota used up): once there is room again, a resume can go on. */
  diskFull: Schema.optional(Schema.Boolean),
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

/** A file left out of a transfer with `send --skip-errors`, and why. */
export const SkippedFile = Schema.Struct({ path: Schema.String, reason: Schema.String })
export type SkippedFile = typeof SkippedFile.Type

/** The transfer completed, but without these files: the sender could not read them (`--skip-errors`). */
export class FilesSkipped extends Schema.TaggedError<FilesSkipped>()("FilesSkipped", {
  side: Schema.Literal("sender", "receiver"),
  files: Schema.NonEmptyArray(SkippedFile),
}) {}

/** No checkpoint is stored for that transfer id (in the direction asked for, if one was). */
export class CheckpointNotFound extends Schema.TaggedError<CheckpointNotFound>()("CheckpointNotFound", {
  transferId: Schema.String,
}) {}

/** A checkpoint file that cannot be trusted (cut short, edited, or not ours): reported, never used. */
export class CheckpointCorrupt extends Schema.TaggedError<CheckpointCorrupt>()("CheckpointCorrupt", {
  /** From the file's name, so the user can delete it by id. */
  transferId: Schema.String,
  direction: Direction,
  path: Schema.String,
  detail: Schema.String,
}) {}

/** Reading, writing or removing a checkpoint file failed. */
export class CheckpointIo extends Schema.TaggedError<CheckpointIo>()("CheckpointIo", {
  path: Schema.String,
  detail: Schema.String,
}) {}

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
  FilesSkipped,
  CheckpointNotFound,
  CheckpointCorrupt,
  CheckpointIo,
)
export type TransferError = typeof TransferError.Type
export const isTransferError = Schema.is(TransferError)

/** Why setting up the peer connection failed: the peer, the signal server refusing the session, or tampering. */
export type ConnectError = PeerFailed | CodeRejected | ServerFailed | CodeMismatch

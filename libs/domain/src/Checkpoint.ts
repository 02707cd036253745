import { Duration, Either, Schema } from "effect"
import { TransferId } from "./Ids.js"
import { issueSuffix, Manifest, totalBytes } from "./Manifest.js"
import { check } from "./ManifestPolicy.js"

/**
 * What one side of a transfer writes down so that an interrupted transfer can resume where it stopped:
 * one checkpoint per transfer and direction. It holds nothing secret (no join code, key or token), so a
 * stolen checkpoint file cannot join anything.
 */

/** How long a checkpoint stays resumable unless `--checkpoint-ttl` says otherwise (the product sheet's 168h). */
export const DefaultTtl = Duration.hours(168)

export const Direction = Schema.Literal("send", "recv")
export type Direction = typeof Direction.Type

/** Milliseconds since the epoch, as Clock counts them. */
const EpochMillis = Schema.NonNegativeInt

/** A path on this machine as it was resolved when the transfer started: absolute, no "." or ".." steps. */
const LocalPath = Schema.String.pipe(
  Schema.filter(
    (p) =>
      (/^(\/|[A-Za-z]:[\\/])/.test(p) &&
        !p.includes("\0") &&
        !p.split(/[\\/]/).some((step) => step === "." || step === "..")) ||
      "must be an absolute path without . or .. steps",
  ),
)

/** One name inside a directory, so it cannot point anywhere else. */
const FileName = Schema.String.pipe(
  Schema.filter(
    (name) => (name !== "." && name !== ".." && /^[^\\/\0]+$/.test(name)) || "must be a plain file name",
  ),
)

/** A file being sent, named by its index in the manifest, as it was on disk when the transfer started. */
export const SentFile = Schema.Struct({
  index: Schema.NonNegativeInt,
  source: LocalPath,
  /** With the manifest's size, tells a resumed transfer whether the file changed since. */
  mtimeMs: Schema.Finite,
  /** Bytes the receiver confirmed durable: always a prefix of the file, so a resume starts here. */
  acked: Schema.NonNegativeInt,
})
export type SentFile = typeof SentFile.Type

/** A file being received, named by its index in the manifest. */
export const ReceivedFile = Schema.Struct({
  index: Schema.NonNegativeInt,
  /** The temporary name, next to the file's target, its bytes go to; absent before the first byte. */
  temp: Schema.optional(FileName),
  /** Bytes written and fsynced: always a prefix of the file. */
  durable: Schema.NonNegativeInt,
  /**
   * Its SHA-256 matched: nothing left to receive. While `temp` is still named it may not have been
   * moved into place yet (recorded just before the move, so a crash cannot orphan it).
   */
  verified: Schema.Boolean,
})
export type ReceivedFile = typeof ReceivedFile.Type

const common = {
  version: Schema.Literal(1),
  transferId: TransferId,
  createdAt: EpochMillis,
  updatedAt: EpochMillis,
  expiresAt: EpochMillis,
  manifest: Manifest,
}

// `direction` comes first: Schema.Union files each member under its first literal field, and with the
// shared `version` first, a bad send checkpoint was reported against the recv rules as well.
const Unchecked = Schema.Union(
  Schema.Struct({ direction: Schema.Literal("send"), ...common, files: Schema.Array(SentFile) }),
  Schema.Struct({
    direction: Schema.Literal("recv"),
    ...common,
    /** The directory the manifest's paths are received into (`recv --out`). */
    out: LocalPath,
    files: Schema.Array(ReceivedFile),
  }),
)

const sizeAt = (manifest: Manifest, index: number) => {
  const entry = manifest.entries[index]
  return entry?._tag === "file" ? entry.size : 0
}

/** Per file: bytes done (a prefix) and whether nothing is left to do for it. */
const fileStates = (c: typeof Unchecked.Type) =>
  c.direction === "send"
    ? c.files.map((f) => ({
        index: f.index,
        done: f.acked,
        complete: f.acked === sizeAt(c.manifest, f.index),
      }))
    : c.files.map((f) => ({ index: f.index, done: f.durable, complete: f.verified }))

/** Rules across fields: a checkpoint that breaks one would resume at the wrong place or write outside `out`. */
const consistent = (c: typeof Unchecked.Type): Schema.FilterOutput => {
  // The same rules the receiver applied to the manifest when it arrived: no "..", no absolute paths.
  const policy = check(c.manifest)
  if (Either.isLeft(policy)) return { path: ["manifest"], message: policy.left.message }
  if (c.updatedAt < c.createdAt) return { path: ["updatedAt"], message: "is before createdAt" }
  const fileIndices = c.manifest.entries.flatMap((entry, i) => (entry._tag === "file" ? [i] : []))
  if (c.files.length !== fileIndices.length || c.files.some((f, i) => f.index !== fileIndices[i]))
    return { path: ["files"], message: "must list every file of the manifest, in order, by its index" }
  for (const [i, state] of fileStates(c).entries()) {
    const size = sizeAt(c.manifest, state.index)
    if (state.done > size || (state.complete && state.done !== size))
      return {
        path: ["files", i],
        message: `counts ${state.done} bytes done${state.complete ? " and complete" : ""} of a ${size}-byte file`,
      }
  }
  return undefined
}

export const Checkpoint = Unchecked.pipe(Schema.filter(consistent))
export type Checkpoint = typeof Checkpoint.Type

export interface Progress {
  readonly bytesDone: number
  readonly bytesTotal: number
  readonly filesDone: number
  readonly filesTotal: number
}

/** Sent: bytes the receiver confirmed; received: bytes on disk, and files verified. */
export const progress = (c: Checkpoint): Progress => {
  const states = fileStates(c)
  return {
    bytesDone: states.reduce((sum, s) => sum + s.done, 0),
    bytesTotal: totalBytes(c.manifest),
    filesDone: states.filter((s) => s.complete).length,
    filesTotal: states.length,
  }
}

export const isExpired = (c: Checkpoint, now: number): boolean => now >= c.expiresAt

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })
const decodeSchema = Schema.decodeUnknownEither(Checkpoint, { onExcessProperty: "error" })
const encodeSchema = Schema.encodeSync(Checkpoint)

/**
 * UTF-8 JSON, indented for whoever opens the file. Throws on a checkpoint that breaks the rules above:
 * that is a bug in its caller, and writing it would only make a damaged file.
 */
export const encodeJson = (c: Checkpoint): Uint8Array =>
  encoder.encode(JSON.stringify(encodeSchema(c), null, 2))

/** A checkpoint file's bytes, or what is wrong with them (unescaped: it may quote anything). */
export const decodeJson = (bytes: Uint8Array): Either.Either<Checkpoint, string> =>
  Either.try({
    try: (): unknown => JSON.parse(decoder.decode(bytes)),
    catch: () => "not valid JSON",
  }).pipe(
    Either.flatMap((json) =>
      Either.mapLeft(decodeSchema(json), (e) => `not a valid checkpoint${issueSuffix(e)}`),
    ),
  )

import { Either, ParseResult, Schema } from "effect"
import { chars, firstIssue } from "./Excerpt.js"
import { MaxManifestBytes } from "./Frames.js"
import { TransferId } from "./Ids.js"
import { check, escapeForDisplay, ManifestError } from "./ManifestPolicy.js"

export { ManifestError }

/**
 * What the sender offers: relative "/"-separated paths. Chunk and FileEnd frames name a file by its
 * index in `entries` (dirs included). Parents of a file are implied; a "dir" entry is for an empty
 * directory (listing an implied one too is allowed).
 */
export const Entry = Schema.Union(
  Schema.TaggedStruct("file", { path: Schema.String, size: Schema.NonNegativeInt }),
  Schema.TaggedStruct("dir", { path: Schema.String }),
)
export type Entry = typeof Entry.Type

export const Manifest = Schema.Struct({
  version: Schema.Literal(1),
  entries: Schema.Array(Entry),
  /** Chunk payloads are sealed with a key from the PAKE, on top of DTLS (`send --encrypt`). */
  encryption: Schema.optional(Schema.Literal("aes-256-gcm")),
  /**
   * The id both sides key their checkpoints by: the first session's transfer id, kept by every resumed
   * session (each of which gets a new code and a new server-side id).
   */
  transfer: Schema.optional(TransferId),
  /**
   * `send --resume`: indices of the files that changed on the sender's disk since the checkpoint. They
   * come again from the first byte, whatever the receiver kept of them.
   */
  changed: Schema.optional(Schema.Array(Schema.NonNegativeInt)),
  /**
   * The one file entry is not a file on disk: `text` (`send --text`), at most MaxTextMessageBytes, for the
   * receiver's stdout; `pipe` (`send -`), whose size is unknown until its FileEnd, so its entry says 0.
   */
  stream: Schema.optional(Schema.Literal("text", "pipe")),
})
export type Manifest = typeof Manifest.Type

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })
const decodeSchema = Schema.decodeUnknownEither(Manifest, { onExcessProperty: "error" })
const encodeSchema = Schema.encodeSync(Manifest)

/** UTF-8 JSON. Properties outside the schema are dropped, so the receiver will not refuse them. */
export const encodeManifest = (m: Manifest): Uint8Array => encoder.encode(JSON.stringify(encodeSchema(m)))

const failure = (rule: string, message: string) => new ManifestError({ entry: undefined, rule, message })

/**
 * The first schema issue, located and cut short, as a suffix: " at entries.0.size: Expected ...". The
 * value quoted in it may be hostile and huge.
 */
export const issueSuffix = (error: ParseResult.ParseError): string => {
  const { path, message } = firstIssue(error)
  return `${path === "" ? "" : ` at ${path}`}: ${chars(message, 200)}`
}

const describe = (error: ParseResult.ParseError): string =>
  escapeForDisplay(`the manifest is malformed${issueSuffix(error)}`)

/** Decodes received manifest bytes and applies ManifestPolicy; treats them as hostile throughout. */
export const decodeManifest = (bytes: Uint8Array): Either.Either<Manifest, ManifestError> =>
  bytes.length > MaxManifestBytes
    ? Either.left(
        failure("too-large", `the manifest is ${bytes.length} bytes, over the ${MaxManifestBytes} limit`),
      )
    : Either.try({
        try: () => decoder.decode(bytes),
        catch: () => failure("invalid-utf8", "the manifest is not valid UTF-8"),
      }).pipe(
        Either.flatMap((text) =>
          Either.try({
            try: (): unknown => JSON.parse(text),
            catch: () => failure("json", "the manifest is not valid JSON"),
          }),
        ),
        Either.flatMap((json) => Either.mapLeft(decodeSchema(json), (e) => failure("schema", describe(e)))),
        Either.flatMap(check),
        Either.flatMap(checkChanged),
        Either.flatMap(checkStream),
      )

/** What a session adds to a collected manifest: the transfer id (at most 64 characters) and the encryption mark. */
const SessionFieldsBytes = 256

/**
 * For the sender, before a code is handed out: whether the manifest, with what a session adds, fits
 * the receiver's MaxManifestBytes. The entry cap alone does not ensure it once paths are long.
 */
export const checkSize = (m: Manifest): Either.Either<Manifest, ManifestError> => {
  const size = encodeManifest(m).length + SessionFieldsBytes
  return size <= MaxManifestBytes
    ? Either.right(m)
    : Either.left(
        failure(
          "too-large",
          `a file list of ${size.toLocaleString("en-US")} bytes, over the ${MaxManifestBytes.toLocaleString("en-US")}-byte limit (fewer files or shorter paths fit)`,
        ),
      )
}

/** `changed` names file entries, each once, in order: anything else is a confused or hostile sender. */
const checkChanged = (m: Manifest): Either.Either<Manifest, ManifestError> => {
  const changed = m.changed ?? []
  const bad = changed.find(
    (index, i) => m.entries[index]?._tag !== "file" || (i > 0 && index <= changed[i - 1]!),
  )
  return bad === undefined
    ? Either.right(m)
    : Either.left(
        failure(
          "changed",
          `the manifest marks entry ${bad} as changed, which is not a file listed once in order`,
        ),
      )
}

/** `send --text`: at most this many bytes of UTF-8. */
export const MaxTextMessageBytes = 64 * 1024
/**
 * `send -`: the most any receiver takes of a pipe, whose size nobody knows in advance (one saved to disk
 * is held to the free space there too). A sender past it is stopped, as one past a declared size is.
 */
export const MaxPipeBytes = 2 ** 40

/** A stream is one file, of a size it can have: anything else is a confused or hostile sender. */
const checkStream = (m: Manifest): Either.Either<Manifest, ManifestError> => {
  if (m.stream === undefined) return Either.right(m)
  const [entry, ...more] = m.entries
  const fits =
    entry?._tag === "file" &&
    more.length === 0 &&
    m.changed === undefined &&
    (m.stream === "text" ? entry.size <= MaxTextMessageBytes : entry.size === 0)
  return fits
    ? Either.right(m)
    : Either.left(
        failure(
          "stream",
          m.stream === "text"
            ? `a text must be one entry of at most ${MaxTextMessageBytes} bytes`
            : "a pipe must be one file entry of size 0",
        ),
      )
}

export const totalBytes = (m: Manifest): number =>
  m.entries.reduce((sum, entry) => sum + (entry._tag === "file" ? entry.size : 0), 0)

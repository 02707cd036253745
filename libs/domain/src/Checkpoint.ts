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
const fileStates = (manifest: Manifest, c: typeof Unchecked.Type | Update) =>
  c.direction === "send"
    ? c.files.map((f) => ({ index: f.index, done: f.acked, complete: f.acked === sizeAt(manifest, f.index) }))
    : c.files.map((f) => ({ index: f.index, done: f.durable, complete: f.verified }))

/** What is wrong with a file's state as `manifest` sizes it, if anything. */
const badState = (manifest: Manifest, state: ReturnType<typeof fileStates>[number]) => {
  const size = sizeAt(manifest, state.index)
  return state.done > size || (state.complete && state.done !== size)
    ? `counts ${state.done} bytes done${state.complete ? " and complete" : ""} of a ${size}-byte file`
    : undefined
}

/** Rules across fields: a checkpoint that breaks one would resume at the wrong place or write outside `out`. */
const consistent = (c: typeof Unchecked.Type): Schema.FilterOutput => {
  // The same rules the receiver applied to the manifest when it arrived: no "..", no absolute paths.
  const policy = check(c.manifest)
  if (Either.isLeft(policy)) return { path: ["manifest"], message: policy.left.message }
  if (c.updatedAt < c.createdAt) return { path: ["updatedAt"], message: "is before createdAt" }
  const fileIndices = c.manifest.entries.flatMap((entry, i) => (entry._tag === "file" ? [i] : []))
  if (c.files.length !== fileIndices.length || c.files.some((f, i) => f.index !== fileIndices[i]))
    return { path: ["files"], message: "must list every file of the manifest, in order, by its index" }
  for (const [i, state] of fileStates(c.manifest, c).entries()) {
    const message = badState(c.manifest, state)
    if (message !== undefined) return { path: ["files", i], message }
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
  const states = fileStates(c.manifest, c)
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

const jsonOf = (bytes: Uint8Array) =>
  Either.try({ try: (): unknown => JSON.parse(decoder.decode(bytes)), catch: () => "not valid JSON" })

/** A checkpoint file's bytes, or what is wrong with them (unescaped: it may quote anything). */
export const decodeJson = (bytes: Uint8Array): Either.Either<Checkpoint, string> =>
  jsonOf(bytes).pipe(
    Either.flatMap((json) =>
      Either.mapLeft(decodeSchema(json), (e) => `not a valid checkpoint${issueSuffix(e)}`),
    ),
  )

/*
 * The journal: a checkpoint is written whole once, then each save appends one line, an Update, to a
 * journal next to it, so that a save costs what changed and not the whole manifest. The journal's first
 * line, its head, names the whole checkpoint it follows by its SHA-256: a journal naming another one is
 * what an interrupted rewrite leaves behind, all of it already in the checkpoint written whole.
 */

/** A sent file as a save changes it: only the bytes the receiver confirmed move. */
export const SentProgress = SentFile.pick("index", "acked")
export type SentProgress = typeof SentProgress.Type

const times = { updatedAt: EpochMillis, expiresAt: EpochMillis }

/** One save: the new times, and the state of each file that changed since the save before. */
export const Update = Schema.Union(
  Schema.Struct({ direction: Schema.Literal("send"), ...times, files: Schema.Array(SentProgress) }),
  Schema.Struct({ direction: Schema.Literal("recv"), ...times, files: Schema.Array(ReceivedFile) }),
)
export type Update = typeof Update.Type

/** Why `update` cannot follow `base`: a file its manifest does not have, or a state the rules forbid. */
const badUpdate = (base: Checkpoint, update: Update): string | undefined => {
  if (update.direction !== base.direction)
    return `holds a ${update.direction} update to a ${base.direction} checkpoint`
  if (update.updatedAt < base.createdAt) return "has updatedAt before createdAt"
  for (const [i, state] of fileStates(base.manifest, update).entries()) {
    if (base.manifest.entries[state.index]?._tag !== "file")
      return `at files.${i}: names entry ${state.index}, not a file of the manifest`
    const message = badState(base.manifest, state)
    if (message !== undefined) return `at files.${i}: ${message}`
  }
  return undefined
}

/** `base` with `updates` applied in order, each one checked against it by `decodeUpdateJson` or `encodeUpdateJson`. */
export const replay = (base: Checkpoint, updates: ReadonlyArray<Update>): Checkpoint => {
  const last = updates.at(-1)
  if (last === undefined) return base
  const at = new Map(base.files.map((f, i) => [f.index, i]))
  const files: Array<SentFile | ReceivedFile> = [...base.files]
  for (const update of updates) {
    if (update.direction === "send")
      for (const f of update.files)
        files[at.get(f.index)!] = { ...(files[at.get(f.index)!] as SentFile), ...f }
    // A received file's state is whole in the update: an absent temp means there is none any more.
    else for (const f of update.files) files[at.get(f.index)!] = f
  }
  return { ...base, updatedAt: last.updatedAt, expiresAt: last.expiresAt, files } as Checkpoint
}

const decodeUpdate = Schema.decodeUnknownEither(Update, { onExcessProperty: "error" })
const encodeUpdate = Schema.encodeSync(Update)

/** One line of JSON (no newline in it) for the journal of `base`. Throws on an update that breaks the rules. */
export const encodeUpdateJson = (base: Checkpoint, update: Update): Uint8Array => {
  const bad = badUpdate(base, update)
  if (bad !== undefined) throw new Error(`a checkpoint update that ${bad}`)
  return encoder.encode(JSON.stringify(encodeUpdate(update)))
}

/** A journal line of `base`, or what is wrong with it (unescaped). */
export const decodeUpdateJson = (base: Checkpoint, line: Uint8Array): Either.Either<Update, string> =>
  jsonOf(line).pipe(
    Either.flatMap((json) =>
      Either.mapLeft(decodeUpdate(json), (e) => `not a valid update${issueSuffix(e)}`),
    ),
    Either.flatMap((update) => {
      const bad = badUpdate(base, update)
      return bad === undefined ? Either.right(update) : Either.left(`an update that ${bad}`)
    }),
  )

const Sha256 = Schema.String.pipe(Schema.pattern(/^[0-9a-f]{64}$/))
const decodeHead = Schema.decodeUnknownEither(Schema.Struct({ base: Sha256 }), { onExcessProperty: "error" })

/** The journal's head: the SHA-256 (hex) of the bytes of the checkpoint written whole it follows. */
export const encodeJournalHead = (sha256: string): Uint8Array =>
  encoder.encode(JSON.stringify({ base: sha256 }))

/** The SHA-256 a journal's head names, or what is wrong with it. */
export const decodeJournalHead = (line: Uint8Array): Either.Either<string, string> =>
  jsonOf(line).pipe(
    Either.flatMap((json) => Either.mapLeft(decodeHead(json), (e) => `not a journal head${issueSuffix(e)}`)),
    Either.map((head) => head.base),
  )

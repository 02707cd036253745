// Over 250 lines on purpose: every check on what a hostile sender sends (DESIGN.md section 4) reads here, in one file.
import { Frames, Manifest, NameRules } from "@p2pal/domain"
import {
  type CheckpointIo,
  Declined,
  IntegrityFailed,
  LocalIoFailed,
  PeerFailed,
  UsageError,
  type SkippedFile,
} from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { Effect, Either, Exit, type Scope } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { Writable } from "node:stream"
import * as DurableFile from "./DurableFile.js"
import { Progress } from "./Progress.js"
import type { RateLimit } from "./RateLimit.js"
import { ioError, withCleanup } from "./Io.js"
import * as Payload from "./Payload.js"
import * as Placer from "./Placer.js"
import * as Sinks from "./Sinks.js"
import * as RecvCheckpoint from "./RecvCheckpoint.js"
import * as Reoffer from "./Reoffer.js"
import { findConflict, freeBytes, probeFolding, targetOf } from "./Targets.js"
import { frameReader, sendFrame, unexpected, WriteBatchBytes } from "./Wire.js"
import { zstd } from "./Zstd.js"

export interface ReceiveOptions {
  /** Opens chunk payloads when the manifest says the sender sealed them (`send --encrypt`). */
  readonly payloadKey?: Buffer | undefined
  readonly out: string
  readonly overwrite: boolean
  /** Refuse what Windows cannot hold too, whatever the platform (a Windows receiver, or the tests). */
  readonly windowsNames: boolean
  /** `--rename-unsafe`: save a name this platform refuses under an escaped one, rather than refuse it. */
  readonly renameUnsafe: boolean
  /** `recv --out -`: the transfer's one file goes here rather than under `out`; several files are refused. */
  readonly stdout?: Writable | undefined
  /** Counters of an earlier connection of this transfer, carried on after a drop (the user sees them). */
  readonly progress?: Progress | undefined
  /**
   * What the user accepted on an earlier connection of this transfer: after a drop the sender must offer
   * exactly that again (Reoffer), checked before any checkpoint is opened.
   */
  readonly accepted?: Manifest.Manifest | undefined
  /** Shows the manifest to the user; false declines the transfer, a failure refuses it (the sender hears why). */
  readonly confirm: (manifest: Manifest.Manifest) => Effect.Effect<boolean, PeerFailed>
  /** Called once the transfer is accepted, with the counters the caller may render. */
  readonly onStart: (
    progress: Progress,
    manifest: Manifest.Manifest,
  ) => Effect.Effect<void, never, Scope.Scope>
  /** The sender skipped a file it could not read (`send --skip-errors`); nothing of it was kept. */
  readonly onSkipped: (file: SkippedFile) => Effect.Effect<void>
  /**
   * Keep a checkpoint of a transfer whose manifest names its id, so that after Ctrl+C or a lost peer the
   * temporary files stay and a resumed session continues them. Without it, any failure removes them.
   */
  readonly checkpoints?: RecvCheckpoint.RecvCheckpointOptions | undefined
  /** `--limit-rate`: the cap on the bytes this side writes, kept by holding back its acknowledgements. */
  readonly limit?: RateLimit | undefined
  /** The codecs to offer the sender in the Accept; all this receiver decodes if not given. */
  readonly codecs?: ReadonlyArray<Frames.CodecName> | undefined
}

type ZstdFrame = Frames.Frame & { _tag: "Zstd" }

const receiveManifest = (nextFrame: Effect.Effect<Frames.Frame, PeerFailed>) =>
  Effect.gen(function* () {
    let buffer: Uint8Array | undefined
    let received = 0
    do {
      const frame = yield* nextFrame
      if (frame._tag !== "ManifestPart") return yield* unexpected(frame, "the manifest")
      // Frames.decode has already held `total` to MaxManifestBytes, so a sender cannot make this any larger.
      buffer ??= new Uint8Array(frame.total)
      if (frame.total !== buffer.length || frame.offset !== received)
        return yield* new PeerFailed({ message: "protocol error: manifest parts out of order" })
      buffer.set(frame.bytes, received)
      received += frame.bytes.length
    } while (received < buffer.length)
    return Manifest.decodeManifest(buffer)
  })

/** This platform's name rules over a manifest every receiver accepts (see NameRules). */
const placeNames = (manifest: Manifest.Manifest, options: ReceiveOptions) =>
  // A text or stdout takes no name from the sender to disk.
  manifest.stream === "text" || options.stdout !== undefined
    ? Effect.succeed(Either.right({ manifest, renamed: [] }))
    : Effect.map(
        Effect.promise(() => probeFolding(options.out)),
        (folds) => {
          const rules = {
            windows: options.windowsNames,
            ...(options.windowsNames ? { foldsCase: true, foldsUnicode: true } : folds),
          }
          return options.renameUnsafe
            ? NameRules.rename(manifest, rules)
            : Either.map(NameRules.check(manifest, rules), (checked) => ({ manifest: checked, renamed: [] }))
        },
      )

const byteCount = (n: number | bigint) => `${n.toLocaleString("en-US")} bytes`

/** Where the received files go once verified, and the checkpoint that records them. */
interface Files {
  readonly tracker: RecvCheckpoint.Tracker | undefined
  /** The tracker's save, one at a time: the placer saves in the background, beside the file being received. */
  readonly save: Effect.Effect<void, CheckpointIo> | undefined
  readonly placer: Placer.Placer
  /** The bytes of the transfer last acknowledged to the sender. */
  readonly acked: { bytes: number }
  readonly limit: RateLimit | undefined
}

/**
 * Receives one file into a durable file (see DurableFile.use): written as its chunks arrive, each batch
 * acknowledged once written, and moved into place only once its SHA-256 matches the sender's. Returns the
 * sender's reason if it skipped the file.
 */
const receiveFile = (
  channel: Channel,
  nextFrame: Effect.Effect<Frames.Frame, PeerFailed>,
  index: number,
  entry: Manifest.Entry & { _tag: "file" },
  open: Sinks.Opener,
  /** The size the sender declared, or for a pipe undefined and the most this receiver takes of it. */
  size: { readonly declared: number | undefined; readonly max: number },
  progress: Progress,
  /** A chunk's file bytes: its payload, or with --encrypt the opened payload (undefined if forged). */
  plaintextOf: (chunk: Frames.Frame & { _tag: "Chunk" }) => Uint8Array | undefined,
  /** A Zstd frame's file bytes (undefined if it does not decode to its size); absent if none was offered. */
  inflate: ((frame: ZstdFrame) => Uint8Array | undefined) | undefined,
  files: Files,
) =>
  Effect.suspend(() => {
    progress.file = index
    progress.fileBytes = files.tracker?.files.get(index)?.durable ?? 0
    return open((file) =>
      Effect.gen(function* () {
        // Told once a write batch's worth is written, however many files it spans: a small file costs no frame.
        // What stays untold is under one batch, far inside the sender's window, so the sender never waits on it.
        // With --limit-rate every byte written waits its turn before it counts: the acknowledgements, and
        // with them the sender, keep to the rate.
        const acknowledge = Effect.suspend(() => {
          const wrote = file.written - progress.fileBytes
          progress.bytes += wrote
          progress.fileBytes = file.written
          const paced = files.limit === undefined ? Effect.void : files.limit.take(wrote)
          if (progress.bytes - files.acked.bytes < WriteBatchBytes) return paced
          files.acked.bytes = progress.bytes
          return Effect.zipRight(paced, sendFrame(channel, { _tag: "Ack", bytes: progress.bytes }))
        })
        const write = Effect.flatMap(file.write, (wrote) => (wrote ? acknowledge : Effect.void))
        const inOrder = (frame: { readonly file: number; readonly offset: number }) =>
          frame.file === index && frame.offset === file.received
            ? Effect.void
            : new PeerFailed({
                message: `protocol error: chunk for file ${frame.file} at ${frame.offset} out of order`,
              })
        const fits = (length: number) =>
          file.received + length <= size.max
            ? Effect.void
            : new PeerFailed({
                message:
                  size.declared === undefined
                    ? `the sender sent more of ${entry.path} than the ${byteCount(size.max)} this receiver takes of a pipe`
                    : `the sender sent more bytes than declared for ${entry.path}`,
              })
        while (true) {
          const frame = yield* nextFrame
          if (frame._tag === "Chunk") {
            yield* inOrder(frame)
            const bytes = plaintextOf(frame)
            if (bytes === undefined)
              return yield* new PeerFailed({
                message: `an encrypted chunk of ${entry.path} failed authentication: it was altered on the way`,
              })
            yield* fits(bytes.length)
            if (yield* file.append(bytes)) yield* acknowledge
          } else if (frame._tag === "Zstd") {
            if (inflate === undefined)
              return yield* new PeerFailed({
                message:
                  "protocol error: the sender sent zstd-compressed data, which this receiver did not offer",
              })
            yield* inOrder(frame)
            // Checked on the declared length, before a byte is decompressed.
            yield* fits(frame.size)
            const bytes = inflate(frame)
            if (bytes === undefined)
              return yield* new PeerFailed({
                message: `protocol error: compressed data for ${entry.path} at ${frame.offset} does not decode to the ${frame.size} bytes it declares`,
              })
            if (yield* file.append(bytes)) yield* acknowledge
          } else if (frame._tag === "FileEnd") {
            if (
              frame.file !== index ||
              frame.size !== (size.declared ?? file.received) ||
              file.received !== frame.size
            )
              return yield* new PeerFailed({ message: `the sender ended ${entry.path} at the wrong size` })
            yield* write
            if (!Buffer.from(yield* file.digest).equals(frame.sha256)) {
              yield* sendFrame(channel, { _tag: "Error", message: `SHA-256 mismatch for ${entry.path}` })
              return yield* new IntegrityFailed({ path: entry.path })
            }
            yield* file.place
            return undefined
          } else if (frame._tag === "Skip") {
            // Only the file in progress can be skipped: one already ended (or not begun, or unknown) cannot.
            if (frame.file !== index)
              return yield* new PeerFailed({
                message: `protocol error: skip for file ${frame.file} while receiving ${entry.path}`,
              })
            // Acknowledges what arrived, so the sender's window does not stay short by it for good.
            yield* write
            yield* file.discard
            return frame.reason
          } else if (frame._tag === "Error")
            return yield* new PeerFailed({ message: `the sender stopped: ${frame.message}` })
          else return yield* unexpected(frame, `data for ${entry.path}`)
        }
      }),
    )
  })

/**
 * What stops a transfer into `out` before anything is written: a target in the way, not enough free disk
 * space. Opens the checkpoint of a transfer that has one. A pipe, of unknown size, may fill the free space.
 */
const checkDisk = (
  manifest: Manifest.Manifest,
  options: ReceiveOptions,
  refuse: (reason: string) => Effect.Effect<void, PeerFailed>,
) =>
  Effect.gen(function* () {
    const { checkpoints } = options
    const tracker =
      checkpoints === undefined || manifest.transfer === undefined
        ? undefined
        : yield* RecvCheckpoint.open(checkpoints, manifest.transfer, manifest, options.out, (entry) =>
            targetOf(options.out, entry),
          ).pipe(
            Effect.tapError((e) =>
              Effect.ignore(
                refuse(
                  e._tag === "PeerFailed" ? e.message : "the receiver could not read what it already has",
                ),
              ),
            ),
          )
    const placedBefore = tracker?.placedBefore ?? new Set<number>()
    const conflict = yield* findConflict(options.out, manifest, options.overwrite, placedBefore).pipe(
      Effect.tapError(() => Effect.ignore(refuse("the receiver could not check what it already has"))),
    )
    if (conflict !== undefined) {
      yield* refuse(`the receiver already has ${path.relative(options.out, conflict.path)}`)
      return yield* conflict
    }
    // Refused up front, rather than failing on a full disk partway through the transfer.
    const total = Manifest.totalBytes(manifest)
    const here = tracker?.bytesHere ?? 0
    const free = yield* Effect.tryPromise({
      try: () => freeBytes(options.out),
      catch: ioError(options.out),
    }).pipe(Effect.tapError(() => Effect.ignore(refuse("the receiver could not check its free disk space"))))
    if (BigInt(total - here) > free) {
      yield* Effect.ignore(refuse(`the receiver does not have ${byteCount(total - here)} of free disk space`))
      return yield* new LocalIoFailed({
        path: options.out,
        message: `not enough free disk space: the files need ${byteCount(total - here)} but only ${byteCount(free)} are free; nothing was written`,
      })
    }
    return { tracker, max: Math.min(Manifest.MaxPipeBytes, Number(free)) }
  })

/**
 * Where a text (kept in memory, handed back once verified) or, with `recv --out -`, the one file goes
 * (stdout, checked to be one file before anything is accepted); undefined: files under `out`.
 */
const sinkFor = (
  manifest: Manifest.Manifest,
  options: ReceiveOptions,
  refuse: (reason: string) => Effect.Effect<void, PeerFailed>,
) =>
  Effect.gen(function* () {
    let text: Uint8Array | undefined
    const [first] = manifest.entries
    if (manifest.stream === "text")
      return { sink: Sinks.toMemory((bytes) => (text = bytes)), text: () => text }
    if (options.stdout === undefined) return { sink: undefined, text: () => text }
    if (manifest.entries.length !== 1 || first?._tag !== "file") {
      yield* Effect.ignore(refuse("the receiver takes one file only (recv --out -)"))
      return yield* new UsageError({
        message: `recv --out - writes one file to stdout, but the sender offers ${manifest.entries.length} entries; receive them into a directory instead`,
      })
    }
    return { sink: Sinks.toWritable(options.stdout, first.path), text: () => text }
  })

/**
 * The receiving side of one transfer: takes the manifest, refuses it if it is hostile or would
 * overwrite something, asks the user, then writes and verifies every file under `out`.
 */
export const receive = Effect.fn("Receiver.receive")(function* (channel: Channel, options: ReceiveOptions) {
  const nextFrame = frameReader(channel)
  const refuse = (reason: string) => sendFrame(channel, { _tag: "Reject", reason })
  const decoded = yield* receiveManifest(nextFrame).pipe(
    // A sender that breaks the protocol before its file list is complete hears why, as a refused one does;
    // if it is gone already, the local reason is the one worth reporting.
    Effect.tapError((e) => Effect.ignore(refuse(e.message))),
    Effect.flatMap(
      Either.match({ onLeft: (e) => Effect.succeed(Either.left(e)), onRight: (m) => placeNames(m, options) }),
    ),
  )
  if (Either.isLeft(decoded)) {
    const message = `refused the sender's file list: ${decoded.left.message}`
    yield* refuse(message)
    return yield* new PeerFailed({ message })
  }
  // Paths as saved here: indices, and so the protocol, are the sender's.
  const { manifest, renamed } = decoded.right
  if (options.accepted !== undefined)
    yield* Reoffer.sameOffer(options.accepted, manifest).pipe(
      Effect.tapError((e) => Effect.ignore(refuse(e.message))),
    )
  const { sink, text } = yield* sinkFor(manifest, options, refuse)
  const { tracker, max } =
    sink === undefined
      ? yield* checkDisk(manifest, options, refuse)
      : { tracker: undefined, max: Manifest.MaxPipeBytes }
  const here = tracker?.bytesHere ?? 0
  const asked = manifest.stream === "text" ? Effect.succeed(true) : options.confirm(manifest)
  if (!(yield* asked.pipe(Effect.tapError((e) => Effect.ignore(refuse(e.message)))))) {
    yield* refuse("the receiver said no")
    return yield* new Declined()
  }
  const { payloadKey } = options
  if (manifest.encryption !== undefined && payloadKey === undefined) {
    const message = "the sender encrypts its files, but this receiver has no key for them"
    yield* refuse(message)
    return yield* new PeerFailed({ message })
  }
  const plaintextOf = (chunk: Frames.Frame & { _tag: "Chunk" }) =>
    manifest.encryption === undefined || payloadKey === undefined
      ? chunk.bytes
      : Payload.openChunk(payloadKey, chunk.file, chunk.offset, chunk.bytes)
  // Sealed chunks come raw: a Zstd frame would carry file bytes past the authentication.
  const codecs = manifest.encryption === undefined ? (options.codecs ?? Frames.Codecs) : []
  const decoder = codecs.includes("zstd") ? yield* zstd : undefined
  const inflate = decoder && ((frame: ZstdFrame) => decoder.decompress(frame.bytes, frame.size))
  for (const [file, offset] of tracker?.resumeFrom ?? [])
    yield* sendFrame(channel, { _tag: "ResumeFrom", file, offset })
  yield* sendFrame(channel, { _tag: "Accept", codecs })
  if (tracker !== undefined) yield* Effect.zipRight(tracker.discardStale, tracker.save)
  const progress = options.progress ?? new Progress(Manifest.totalBytes(manifest))
  progress.bytes = here
  progress.limit = options.limit?.bytesPerSecond
  yield* options.onStart(progress, manifest)
  yield* withCleanup(
    receiveFiles(channel, nextFrame, manifest, options, progress, { plaintextOf, inflate }, tracker, {
      sink,
      max,
    }),
    // Kept for a resume only when one can build on it; a peer that broke the protocol leaves nothing.
    (exit) =>
      tracker !== undefined && Exit.isFailure(exit) && !RecvCheckpoint.resumable(exit)
        ? tracker.remove
        : Effect.void,
  )
  if (tracker !== undefined) yield* tracker.remove
  yield* sendFrame(channel, { _tag: "Done" })
  return { renamed, text: text() }
})

/**
 * Every file of the manifest in order, except those verified in an earlier session; returns once the
 * last of them is placed and recorded.
 */
const receiveFiles = (
  channel: Channel,
  nextFrame: Effect.Effect<Frames.Frame, PeerFailed>,
  manifest: Manifest.Manifest,
  options: ReceiveOptions,
  progress: Progress,
  data: {
    readonly plaintextOf: (chunk: Frames.Frame & { _tag: "Chunk" }) => Uint8Array | undefined
    readonly inflate: ((frame: ZstdFrame) => Uint8Array | undefined) | undefined
  },
  tracker: RecvCheckpoint.Tracker | undefined,
  /** Where the bytes go when not to files under `out` (see sinkFor), and the most a pipe may carry here. */
  stream: { readonly sink: Sinks.Opener | undefined; readonly max: number },
) =>
  Effect.gen(function* () {
    const lock = yield* Effect.makeSemaphore(1)
    const save = tracker === undefined ? undefined : lock.withPermits(1)(tracker.save)
    const files: Files = {
      tracker,
      save,
      placer: yield* Placer.make(save),
      acked: { bytes: progress.bytes },
      limit: options.limit,
    }
    /** Directories made so far: one mkdir per directory, not per file. */
    const made = new Set<string>()
    yield* Effect.forEach(
      manifest.entries,
      (entry, index) =>
        Effect.gen(function* () {
          const target = targetOf(options.out, entry)
          const dir = entry._tag === "dir" ? target : path.dirname(target)
          if (stream.sink === undefined && !made.has(dir)) {
            yield* Effect.tryPromise({ try: () => fs.mkdir(dir, { recursive: true }), catch: ioError(dir) })
            made.add(dir)
          }
          if (entry._tag !== "file" || tracker?.files.get(index)?.verified === true) return
          const skipped = yield* receiveFile(
            channel,
            nextFrame,
            index,
            entry,
            stream.sink ??
              ((body) => {
                const state = tracker?.files.get(index)
                const checkpoint = state === undefined || save === undefined ? undefined : { state, save }
                const overwrite = options.overwrite || (tracker?.placedBefore.has(index) ?? false)
                return DurableFile.use(
                  {
                    target,
                    size: entry.size,
                    overwrite,
                    pipe: manifest.stream === "pipe",
                    checkpoint,
                    placer: files.placer,
                  },
                  body,
                )
              }),
            manifest.stream === "pipe"
              ? { declared: undefined, max: stream.max }
              : { declared: entry.size, max: entry.size },
            progress,
            data.plaintextOf,
            data.inflate,
            files,
          ).pipe(
            Effect.mapError((e) =>
              e._tag === "IntegrityFailed" && options.stdout !== undefined && manifest.stream !== "text"
                ? new IntegrityFailed({ path: e.path, toStdout: true })
                : e,
            ),
            // The sender learns why its data was refused (bytes past the declared size, chunks out of order).
            Effect.tapErrorTag("PeerFailed", (e) =>
              Effect.ignore(sendFrame(channel, { _tag: "Error", message: e.message })),
            ),
          )
          if (skipped !== undefined) yield* options.onSkipped({ path: entry.path, reason: skipped })
        }),
      { discard: true },
    )
    yield* files.placer.drain
  }).pipe(Effect.scoped)

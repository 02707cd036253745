import { Frames, Manifest } from "@p2pal/domain"
import { Declined, IntegrityFailed, LocalIoFailed, PeerFailed, type SkippedFile } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { Effect, Either, Exit, type Scope } from "effect"
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Progress } from "./Progress.js"
import { absorbPrefix, Hasher } from "./Hasher.js"
import { ioError } from "./Io.js"
import * as Payload from "./Payload.js"
import * as RecvCheckpoint from "./RecvCheckpoint.js"
import { checkTargets, freeBytes, place, targetOf } from "./Targets.js"
import { frameReader, sendFrame, unexpected, WriteBatchBytes } from "./Wire.js"

export interface ReceiveOptions {
  /** Opens chunk payloads when the manifest says the sender sealed them (`send --encrypt`). */
  readonly payloadKey?: Buffer | undefined
  readonly out: string
  readonly overwrite: boolean
  /** Counters of an earlier connection of this transfer, carried on after a drop (the user sees them). */
  readonly progress?: Progress | undefined
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
}

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

/**
 * Bytes written between two background flushes of a file to disk; each one that completes moves the
 * checkpoint on, so it is also how much a crash may cost a resume.
 */
const DurableBytes = 16 * 1024 * 1024

/** Writes all of `bytes` at `position`: a write may stop short (a disk filling up), so it goes on from there. */
const writeAll = async (handle: fs.FileHandle, bytes: Uint8Array, position: number) => {
  for (let at = 0; at < bytes.length;) {
    const { bytesWritten } = await handle.write(bytes, at, bytes.length - at, position + at)
    if (bytesWritten === 0) throw new Error("the disk took no more bytes")
    at += bytesWritten
  }
}

const byteCount = (n: number | bigint) => `${n.toLocaleString("en-US")} bytes`

/**
 * Writes one file to a temporary name next to its target and moves it into place only once its
 * SHA-256 matches the sender's; when the sender skips it, or on a failure a resume cannot build on, the
 * temporary file is removed. With a checkpoint, a file already partly here continues from its durable
 * bytes (their hash rebuilt from disk), and after Ctrl+C or a lost peer the temporary file stays, synced
 * and recorded. Returns the sender's reason if it skipped the file.
 */
const receiveFile = (
  channel: Channel,
  nextFrame: Effect.Effect<Frames.Frame, PeerFailed>,
  index: number,
  entry: Manifest.Entry & { _tag: "file" },
  target: string,
  overwrite: boolean,
  progress: Progress,
  /** A chunk's file bytes: its payload, or with --encrypt the opened payload (undefined if forged). */
  plaintextOf: (chunk: Frames.Frame & { _tag: "Chunk" }) => Uint8Array | undefined,
  tracker: RecvCheckpoint.Tracker | undefined,
) =>
  Effect.gen(function* () {
    const state = tracker?.files.get(index)
    const from = state?.durable ?? 0
    progress.file = index
    progress.fileBytes = from
    const temp = path.join(
      path.dirname(target),
      from > 0 && state?.temp !== undefined ? state.temp : RecvCheckpoint.tempName(target),
    )
    if (state !== undefined) state.temp = path.basename(temp)
    const hasher = yield* Hasher
    const hash = hasher.start()
    let placed = false
    let received = from
    let written = from
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          if (from === 0) return fs.open(temp, "wx", 0o644)
          // Bytes past the durable ones may be torn by a crash: cut them, and hash the rest as it is on disk.
          const h = await fs.open(temp, fsConstants.O_RDWR | fsConstants.O_NOFOLLOW)
          try {
            await h.truncate(from)
            await absorbPrefix(hasher, hash, h, from)
            return h
          } catch (e) {
            await h.close()
            throw e
          }
        },
        catch: ioError(temp),
      }),
      (h, exit) => {
        const keep = !placed && state !== undefined && tracker !== undefined && RecvCheckpoint.resumable(exit)
        return Effect.promise(async () => {
          if (keep)
            await h.datasync().then(
              () => (state.durable = RecvCheckpoint.durableOf(written, entry.size)),
              // Not synced: the durable bytes recorded earlier are still a sound prefix.
              () => {},
            )
          await h.close()
          if (!placed && !keep) await fs.rm(temp, { force: true })
        }).pipe(
          // Not saved: the checkpoint on disk still holds an earlier, smaller prefix of the file.
          Effect.zipRight(keep ? Effect.ignore(tracker.save) : Effect.void),
        )
      },
    )
    let batch: Array<Uint8Array> = []
    // The kernel would keep the whole file dirty until the final fsync and then flush it all at once
    // (about 0.5 s per GiB here, with nothing else left to overlap): flushing as the file grows keeps
    // that tail short. Chained, so a failed flush fails the final sync instead of going unseen.
    let flushedToDisk: Promise<void> = Promise.resolve()
    let flushRequestedAt = from
    /** Bytes the background flushes have made durable so far. */
    let synced = from
    const flush = Effect.gen(function* () {
      if (batch.length === 0) return
      // One contiguous copy into recycled memory: a single write, and a single block for the hashing thread.
      const block = hasher.allocate(received - written)
      let at = 0
      for (const b of batch) {
        block.set(b, at)
        at += b.length
      }
      batch = []
      yield* Effect.tryPromise({ try: () => writeAll(handle, block, written), catch: ioError(target) })
      written = received
      if (written - flushRequestedAt >= DurableBytes) {
        const upTo = (flushRequestedAt = written)
        flushedToDisk = flushedToDisk.then(() => handle.datasync()).then(() => void (synced = upTo))
        flushedToDisk.catch(() => {})
      }
      const durable = RecvCheckpoint.durableOf(synced, entry.size)
      if (state !== undefined && tracker !== undefined && durable > state.durable) {
        state.durable = durable
        yield* tracker.save
      }
      hash.absorb([block])
      progress.bytes += written - progress.fileBytes
      progress.fileBytes = written
      yield* sendFrame(channel, { _tag: "Ack", bytes: progress.bytes })
    })
    while (true) {
      const frame = yield* nextFrame
      if (frame._tag === "Chunk") {
        if (frame.file !== index || frame.offset !== received)
          return yield* new PeerFailed({
            message: `protocol error: chunk for file ${frame.file} at ${frame.offset} out of order`,
          })
        const bytes = plaintextOf(frame)
        if (bytes === undefined)
          return yield* new PeerFailed({
            message: `an encrypted chunk of ${entry.path} failed authentication: it was altered on the way`,
          })
        if (received + bytes.length > entry.size)
          return yield* new PeerFailed({
            message: `the sender sent more bytes than declared for ${entry.path}`,
          })
        batch.push(bytes)
        received += bytes.length
        if (received - written >= WriteBatchBytes) yield* flush
      } else if (frame._tag === "FileEnd") {
        if (frame.file !== index || frame.size !== entry.size || received !== entry.size)
          return yield* new PeerFailed({ message: `the sender ended ${entry.path} at the wrong size` })
        yield* flush
        if (!Buffer.from(yield* hash.digest).equals(frame.sha256)) {
          yield* sendFrame(channel, { _tag: "Error", message: `SHA-256 mismatch for ${entry.path}` })
          return yield* new IntegrityFailed({ path: entry.path })
        }
        yield* Effect.tryPromise({
          try: () => flushedToDisk.then(() => handle.sync()),
          catch: ioError(target),
        })
        // Recorded as verified under its temporary name before it moves: whenever the receiver stops
        // (a crash included), a resume finds the move done or finishes it, and never mistakes the placed
        // file for someone else's. The next save drops the temporary name.
        yield* Effect.uninterruptible(
          Effect.gen(function* () {
            if (state !== undefined && tracker !== undefined) {
              Object.assign(state, { durable: entry.size, verified: true })
              yield* tracker.save
            }
            yield* Effect.tryPromise({
              try: () => place(temp, target, overwrite),
              catch: ioError(target),
            })
            placed = true
            if (state !== undefined) state.temp = undefined
          }),
        )
        return undefined
      } else if (frame._tag === "Skip") {
        // Only the file in progress can be skipped: one already ended (or not begun, or unknown) cannot.
        if (frame.file !== index)
          return yield* new PeerFailed({
            message: `protocol error: skip for file ${frame.file} while receiving ${entry.path}`,
          })
        // Acknowledges what arrived, so the sender's window does not stay short by it for good.
        yield* flush
        if (state !== undefined) Object.assign(state, { temp: undefined, durable: 0 })
        return frame.reason
      } else if (frame._tag === "Error")
        return yield* new PeerFailed({ message: `the sender stopped: ${frame.message}` })
      else return yield* unexpected(frame, `data for ${entry.path}`)
    }
  }).pipe(Effect.scoped)

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
  )
  if (Either.isLeft(decoded)) {
    const message = `refused the sender's file list: ${decoded.left.message}`
    yield* refuse(message)
    return yield* new PeerFailed({ message })
  }
  const manifest = decoded.right
  const { checkpoints } = options
  const tracker =
    checkpoints === undefined || manifest.transfer === undefined
      ? undefined
      : yield* RecvCheckpoint.open(checkpoints, manifest.transfer, manifest, options.out, (entry) =>
          targetOf(options.out, entry),
        )
  const placedBefore = tracker?.placedBefore ?? new Set<number>()
  yield* checkTargets(options.out, manifest, options.overwrite, placedBefore).pipe(
    Effect.tapError((e) => refuse(`the receiver already has ${path.relative(options.out, e.path)}`)),
  )
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
  if (!(yield* options.confirm(manifest).pipe(Effect.tapError((e) => Effect.ignore(refuse(e.message)))))) {
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
  for (const [file, offset] of tracker?.resumeFrom ?? [])
    yield* sendFrame(channel, { _tag: "ResumeFrom", file, offset })
  yield* sendFrame(channel, { _tag: "Accept" })
  if (tracker !== undefined) yield* Effect.zipRight(tracker.discardStale, tracker.save)
  const progress = options.progress ?? new Progress(total)
  progress.bytes = here
  yield* options.onStart(progress, manifest)
  yield* receiveFiles(channel, nextFrame, manifest, options, progress, plaintextOf, tracker).pipe(
    // Kept for a resume only when one can build on it; a peer that broke the protocol leaves nothing.
    Effect.onExit((exit) =>
      tracker !== undefined && Exit.isFailure(exit) && !RecvCheckpoint.resumable(exit)
        ? Effect.ignore(tracker.remove)
        : Effect.void,
    ),
  )
  if (tracker !== undefined) yield* tracker.remove
  yield* sendFrame(channel, { _tag: "Done" })
})

/** Every file of the manifest in order, except those verified in an earlier session. */
const receiveFiles = (
  channel: Channel,
  nextFrame: Effect.Effect<Frames.Frame, PeerFailed>,
  manifest: Manifest.Manifest,
  options: ReceiveOptions,
  progress: Progress,
  plaintextOf: (chunk: Frames.Frame & { _tag: "Chunk" }) => Uint8Array | undefined,
  tracker: RecvCheckpoint.Tracker | undefined,
) =>
  Effect.forEach(
    manifest.entries,
    (entry, index) =>
      Effect.gen(function* () {
        const target = targetOf(options.out, entry)
        const dir = entry._tag === "dir" ? target : path.dirname(target)
        yield* Effect.tryPromise({ try: () => fs.mkdir(dir, { recursive: true }), catch: ioError(dir) })
        if (entry._tag !== "file" || tracker?.files.get(index)?.verified === true) return
        const skipped = yield* receiveFile(
          channel,
          nextFrame,
          index,
          entry,
          target,
          options.overwrite || (tracker?.placedBefore.has(index) ?? false),
          progress,
          plaintextOf,
          tracker,
        ).pipe(
          // The sender learns why its data was refused (bytes past the declared size, chunks out of order).
          Effect.tapErrorTag("PeerFailed", (e) =>
            Effect.ignore(sendFrame(channel, { _tag: "Error", message: e.message })),
          ),
        )
        if (skipped !== undefined) yield* options.onSkipped({ path: entry.path, reason: skipped })
      }),
    { discard: true },
  )

import { Frames, Manifest } from "@p2pal/domain"
import { Declined, IntegrityFailed, LocalIoFailed, PeerFailed, type SkippedFile } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { Effect, Either, type Scope } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Progress } from "./Progress.js"
import { Hasher } from "./Hasher.js"
import { ioError } from "./Io.js"
import * as Payload from "./Payload.js"
import { frameReader, sendFrame, unexpected, WriteBatchBytes } from "./Wire.js"

export interface ReceiveOptions {
  /** Opens chunk payloads when the manifest says the sender sealed them (`send --encrypt`). */
  readonly payloadKey?: Buffer | undefined
  readonly out: string
  readonly overwrite: boolean
  /** Shows the manifest to the user; false declines the transfer. */
  readonly confirm: (manifest: Manifest.Manifest) => Effect.Effect<boolean>
  /** Called once the transfer is accepted, with the counters the caller may render. */
  readonly onStart: (
    progress: Progress,
    manifest: Manifest.Manifest,
  ) => Effect.Effect<void, never, Scope.Scope>
  /** The sender skipped a file it could not read (`send --skip-errors`); nothing of it was kept. */
  readonly onSkipped: (file: SkippedFile) => Effect.Effect<void>
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

/** Bytes written between two background flushes of a file to disk. */
const DiskFlushBytes = 64 * 1024 * 1024

/** Writes all of `bytes` at `position`: a write may stop short (a disk filling up), so it goes on from there. */
const writeAll = async (handle: fs.FileHandle, bytes: Uint8Array, position: number) => {
  for (let at = 0; at < bytes.length;) {
    const { bytesWritten } = await handle.write(bytes, at, bytes.length - at, position + at)
    if (bytesWritten === 0) throw new Error("the disk took no more bytes")
    at += bytesWritten
  }
}

/** Where each entry lands under `out`; the manifest policy has already ruled out anything escaping it. */
const targetOf = (out: string, entry: Manifest.Entry) => path.join(out, ...entry.path.split("/"))

const lstat = (p: string) => Effect.promise(() => fs.lstat(p).catch(() => undefined))

/**
 * Refuses, before anything is written, to replace what is already on disk unless asked to, or to
 * write through a symlink that already sits inside `out` (it could point anywhere).
 */
const checkTargets = (out: string, manifest: Manifest.Manifest, overwrite: boolean) => {
  const safeParents = new Set<string>()
  return Effect.forEach(manifest.entries, (entry) =>
    Effect.gen(function* () {
      const target = targetOf(out, entry)
      const parts = entry.path.split("/")
      for (let depth = 1; depth < parts.length; depth++) {
        const parent = path.join(out, ...parts.slice(0, depth))
        if (safeParents.has(parent)) continue
        if ((yield* lstat(parent))?.isSymbolicLink())
          return yield* new LocalIoFailed({
            path: parent,
            message: "is a symlink; refusing to write through it",
          })
        safeParents.add(parent)
      }
      const stat = yield* lstat(target)
      if (stat === undefined) return
      if (entry._tag === "dir" && stat.isDirectory()) return
      if (entry._tag === "file" && stat.isFile() && overwrite) return
      return yield* new LocalIoFailed({
        path: target,
        message:
          entry._tag === "file" && stat.isFile()
            ? "already exists; nothing was written (use --overwrite to replace it)"
            : `already exists as a ${stat.isSymbolicLink() ? "symlink" : stat.isDirectory() ? "directory" : "special file"}; nothing was written`,
      })
    }),
  )
}

/** Free bytes an unprivileged user may fill on the file system that holds (or will hold) `dir`. */
const freeBytes = async (dir: string): Promise<bigint> => {
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    try {
      const stats = await fs.statfs(at, { bigint: true })
      return stats.bavail * stats.bsize
    } catch (e) {
      // The out dir is created only once the transfer is accepted: ask the nearest ancestor that exists.
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || path.dirname(at) === at) throw e
    }
  }
}

const byteCount = (n: number | bigint) => `${n.toLocaleString("en-US")} bytes`

/**
 * Writes one file to a temporary name next to its target and moves it into place only once its
 * SHA-256 matches the sender's; on any failure, or when the sender skips it, the temporary file is
 * removed. Returns the sender's reason if it skipped the file.
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
) =>
  Effect.gen(function* () {
    progress.file = index
    progress.fileBytes = 0
    const temp = path.join(
      path.dirname(target),
      `.${path.basename(target)}.${randomBytes(4).toString("hex")}.p2pal-part`,
    )
    let placed = false
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => fs.open(temp, "wx", 0o644), catch: ioError(temp) }),
      (h) =>
        Effect.promise(async () => {
          await h.close()
          if (!placed) await fs.rm(temp, { force: true })
        }),
    )
    const hasher = yield* Hasher
    const hash = hasher.start()
    let received = 0
    let written = 0
    let batch: Array<Uint8Array> = []
    // The kernel would keep the whole file dirty until the final fsync and then flush it all at once
    // (about 0.5 s per GiB here, with nothing else left to overlap): flushing as the file grows keeps
    // that tail short. Chained, so a failed flush fails the final sync instead of going unseen.
    let flushedToDisk: Promise<void> = Promise.resolve()
    let flushRequestedAt = 0
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
      if (written - flushRequestedAt >= DiskFlushBytes) {
        flushRequestedAt = written
        flushedToDisk = flushedToDisk.then(() => handle.datasync())
        flushedToDisk.catch(() => {})
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
        yield* Effect.tryPromise({
          // link() refuses an existing target, so a file that appeared meanwhile is never clobbered.
          try: () => (overwrite ? fs.rename(temp, target) : fs.link(temp, target).then(() => fs.rm(temp))),
          catch: ioError(target),
        })
        placed = true
        return undefined
      } else if (frame._tag === "Skip") {
        // Only the file in progress can be skipped: one already ended (or not begun, or unknown) cannot.
        if (frame.file !== index)
          return yield* new PeerFailed({
            message: `protocol error: skip for file ${frame.file} while receiving ${entry.path}`,
          })
        // Acknowledges what arrived, so the sender's window does not stay short by it for good.
        yield* flush
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
  yield* checkTargets(options.out, manifest, options.overwrite).pipe(
    Effect.tapError((e) => refuse(`the receiver already has ${path.relative(options.out, e.path)}`)),
  )
  // Refused up front, rather than failing on a full disk partway through the transfer.
  const total = Manifest.totalBytes(manifest)
  const free = yield* Effect.tryPromise({
    try: () => freeBytes(options.out),
    catch: ioError(options.out),
  }).pipe(Effect.tapError(() => Effect.ignore(refuse("the receiver could not check its free disk space"))))
  if (BigInt(total) > free) {
    yield* Effect.ignore(refuse(`the receiver does not have ${byteCount(total)} of free disk space`))
    return yield* new LocalIoFailed({
      path: options.out,
      message: `not enough free disk space: the files need ${byteCount(total)} but only ${byteCount(free)} are free; nothing was written`,
    })
  }
  if (!(yield* options.confirm(manifest))) {
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
  yield* sendFrame(channel, { _tag: "Accept" })
  const progress = new Progress(total)
  yield* options.onStart(progress, manifest)
  for (const [index, entry] of manifest.entries.entries()) {
    const target = targetOf(options.out, entry)
    const dir = entry._tag === "dir" ? target : path.dirname(target)
    yield* Effect.tryPromise({ try: () => fs.mkdir(dir, { recursive: true }), catch: ioError(dir) })
    if (entry._tag !== "file") continue
    const skipped = yield* receiveFile(
      channel,
      nextFrame,
      index,
      entry,
      target,
      options.overwrite,
      progress,
      plaintextOf,
    ).pipe(
      // The sender learns why its data was refused (bytes past the declared size, chunks out of order).
      Effect.tapErrorTag("PeerFailed", (e) =>
        Effect.ignore(sendFrame(channel, { _tag: "Error", message: e.message })),
      ),
    )
    if (skipped !== undefined) yield* options.onSkipped({ path: entry.path, reason: skipped })
  }
  yield* sendFrame(channel, { _tag: "Done" })
})

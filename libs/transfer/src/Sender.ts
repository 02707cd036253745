import { Frames, Manifest } from "@p2pal/domain"
import { LocalIoFailed, PeerFailed, type SkippedFile } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { Data, Deferred, Duration, Effect } from "effect"
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import type { Progress } from "./Progress.js"
import { Hasher } from "./Hasher.js"
import { readFailure } from "./Io.js"
import * as Payload from "./Payload.js"
import type { Source, Sources } from "./Sources.js"
import { AckWindowBytes, frameReader, sendFrame, unexpected } from "./Wire.js"

export interface SendOptions {
  /** Payload bytes per chunk frame (at most Frames.MaxChunkBytes). */
  readonly chunkSize: number
  readonly progress: Progress
  /** With `--encrypt`: seal every chunk payload with this key (the manifest says so). */
  readonly payloadKey?: Buffer | undefined
  /**
   * With `--skip-errors`: a file that cannot be read, or changes while it is read, is skipped (the
   * receiver is told) and handed to this, instead of ending the transfer.
   */
  readonly skipUnreadable?: ((file: SkippedFile) => Effect.Effect<void>) | undefined
}

/** The source of the file being sent failed it; `reason` names no local path, the receiver hears it too. */
class Unreadable extends Data.TaggedError("Unreadable")<{ readonly reason: string }> {}

const cannotRead = (e: unknown) => new Unreadable({ reason: readFailure(e) })

const changed = "it changed while being sent"

/** After telling the receiver we stop, how long to wait for it to answer, so the message is not lost in a close. */
const StopGrace = Duration.seconds(5)

/** Chunks read from disk per read call: large reads keep the disk from idling the pump. */
const ChunksPerRead = 16
/** Reads in flight ahead of the one being sent. */
const ReadAhead = 4

/**
 * The sending side of one transfer: offers the manifest, then streams every file in manifest order,
 * never more than AckWindowBytes ahead of what the receiver has written, and returns once the receiver
 * reports every file verified.
 */
export const send = Effect.fn("Sender.send")(function* (
  channel: Channel,
  sources: Sources,
  options: SendOptions,
) {
  const { payloadKey } = options
  const manifestBytes = Manifest.encodeManifest(
    payloadKey === undefined ? sources.manifest : { ...sources.manifest, encryption: "aes-256-gcm" },
  )
  for (let offset = 0; offset < manifestBytes.length; offset += Frames.MaxChunkBytes) {
    const bytes = manifestBytes.subarray(offset, offset + Frames.MaxChunkBytes)
    yield* sendFrame(channel, { _tag: "ManifestPart", total: manifestBytes.length, offset, bytes })
  }
  const nextFrame = frameReader(channel)
  const reply = yield* nextFrame
  if (reply._tag === "Reject")
    return yield* new PeerFailed({ message: `the receiver declined: ${reply.reason}` })
  if (reply._tag === "Error")
    return yield* new PeerFailed({ message: `the receiver failed: ${reply.message}` })
  if (reply._tag !== "Accept") return yield* unexpected(reply, "Accept")

  const { progress } = options
  const hasher = yield* Hasher
  const verified = yield* Deferred.make<void, PeerFailed>()
  let acked = 0
  let wake: (() => void) | undefined
  const ackLoop = Effect.gen(function* () {
    while (true) {
      const frame = yield* nextFrame
      if (frame._tag === "Ack") {
        acked = frame.bytes
        progress.bytes = acked
        wake?.()
      } else if (frame._tag === "Done") return
      else if (frame._tag === "Error")
        return yield* new PeerFailed({ message: `the receiver stopped: ${frame.message}` })
      else return yield* unexpected(frame, "Ack or Done")
    }
  })
  yield* ackLoop.pipe(
    Effect.exit,
    Effect.flatMap((exit) => Deferred.done(verified, exit)),
    Effect.forkScoped,
  )
  let sent = 0
  const roomInWindow = Effect.async<void>((resume) => {
    wake = () => {
      if (sent - acked <= AckWindowBytes) {
        wake = undefined
        resume(Effect.void)
      }
    }
    wake()
  }).pipe(
    // The receiver may stop acknowledging for good (it failed, or finished early): never wait past that.
    Effect.raceFirst(
      Effect.zipRight(
        Deferred.await(verified),
        Effect.fail(
          new PeerFailed({ message: "protocol error: the receiver finished before all data was sent" }),
        ),
      ),
    ),
  )

  const sendFile = (index: number, entry: Manifest.Entry & { _tag: "file" }, source: Source) =>
    Effect.gen(function* () {
      progress.file = index
      progress.fileBytes = 0
      const hash = hasher.start()
      const handle = yield* Effect.acquireRelease(
        // A symlink swapped in since the manifest was built is refused, not followed (O_NOFOLLOW), and a
        // FIFO cannot hang the open (O_NONBLOCK; it changes nothing for regular files).
        Effect.tryPromise({
          try: () =>
            fs.open(source.path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK),
          catch: cannotRead,
        }),
        (h) => Effect.promise(() => h.close()),
      )
      // One buffer holds a run of chunk frames back to back, and one readv fills their payloads in
      // place: file bytes are never copied into frames, and the run moves to the hashing thread whole.
      const readBlock = async (position: number, end: number) => {
        const count = Math.ceil((end - position) / options.chunkSize)
        const block = hasher.allocate(end - position + count * Frames.HeaderBytes)
        const frames: Array<Uint8Array> = []
        for (let at = position, base = 0; at < end; at += options.chunkSize) {
          const length = Math.min(options.chunkSize, end - at)
          frames.push(Frames.chunkInto(block.subarray(base, base + Frames.HeaderBytes + length), index, at))
          base += Frames.HeaderBytes + length
        }
        const payloads = frames.map((f) => f.subarray(Frames.HeaderBytes))
        const { bytesRead } = await handle.readv(payloads, position)
        if (bytesRead !== end - position) throw new Error(changed)
        return { frames, payloads, start: position, end }
      }
      // Reads are plain promises started the moment they are queued (a forked fiber waits for the
      // scheduler, which stalled the pump for seconds per GiB), and a few run ahead of the network.
      const reads: Array<ReturnType<typeof readBlock>> = []
      let queued = 0
      const readAhead = () => {
        while (reads.length < ReadAhead && queued < entry.size) {
          const end = Math.min(queued + options.chunkSize * ChunksPerRead, entry.size)
          const read = readBlock(queued, end)
          // Awaited in order below; this only keeps a failure behind an earlier one from going unhandled.
          read.catch(() => {})
          reads.push(read)
          queued = end
        }
      }
      readAhead()
      while (reads.length > 0) {
        const next = reads.shift()!
        const { frames, payloads, start, end } = yield* Effect.tryPromise({
          try: () => next,
          catch: cannotRead,
        })
        readAhead()
        // The window is checked per run of frames: it may be overshot by one run (about 1 MiB).
        if (sent - acked > AckWindowBytes) yield* roomInWindow
        yield* channel.send(
          ...(payloadKey === undefined
            ? frames
            : payloads.map((p, i) => Payload.sealChunk(payloadKey, index, start + i * options.chunkSize, p))),
        )
        sent += end - start
        progress.fileBytes += end - start
        // node-datachannel copied each frame on send, so the bytes can move to the hashing thread now.
        hash.absorb(payloads)
      }
      // Every byte was read, but a file grown, or rewritten in place, since it was listed is not the
      // file the receiver was offered (a shrunk one already failed its read).
      const now = yield* Effect.tryPromise({
        try: () => handle.stat(),
        catch: cannotRead,
      })
      if (now.size !== entry.size || now.mtimeMs !== source.mtimeMs)
        return yield* new Unreadable({ reason: changed })
      yield* sendFrame(channel, {
        _tag: "FileEnd",
        file: index,
        size: entry.size,
        sha256: yield* hash.digest,
      })
    }).pipe(Effect.scoped)

  /** Skips the file (`--skip-errors`), or stops the transfer naming it; the receiver is told either way. */
  const unreadable = (
    index: number,
    entry: Manifest.Entry,
    source: Source,
    reason: string,
  ): Effect.Effect<void, PeerFailed | LocalIoFailed> => {
    const { skipUnreadable } = options
    if (skipUnreadable !== undefined)
      return Effect.zipRight(
        sendFrame(channel, { _tag: "Skip", file: index, reason }),
        skipUnreadable({ path: source.path, reason }),
      )
    return sendFrame(channel, { _tag: "Error", message: `could not send ${entry.path}: ${reason}` }).pipe(
      // The receiver answers by stopping too; until then the message may still sit in a send buffer.
      Effect.zipRight(Deferred.await(verified).pipe(Effect.raceFirst(channel.closed))),
      Effect.timeout(StopGrace),
      Effect.ignore,
      Effect.zipRight(
        Effect.fail(
          new LocalIoFailed({
            path: source.path,
            message: `${reason}; the transfer was stopped (--skip-errors would send the other files without it)`,
          }),
        ),
      ),
    )
  }

  const entries = sources.manifest.entries
  for (let index = 0; index < entries.length; index++) {
    const entry = entries[index]!
    const source = sources.files.get(index)
    if (entry._tag === "file" && source !== undefined)
      yield* sendFile(index, entry, source).pipe(
        Effect.catchTag("Unreadable", ({ reason }) => unreadable(index, entry, source, reason)),
      )
  }
  yield* Deferred.await(verified).pipe(Effect.raceFirst(channel.closed))
  progress.bytes = progress.totalBytes
})

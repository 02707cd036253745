import { Frames, Manifest } from "@p2pal/domain"
import { LocalIoFailed, PeerFailed, type SkippedFile } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { Data, Deferred, Duration, Effect } from "effect"
import { constants as fsConstants } from "node:fs"
import * as fs from "node:fs/promises"
import type { Progress } from "./Progress.js"
import { absorbPrefix, Hasher } from "./Hasher.js"
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
  /** For the caller's checkpoint: what the receiver has confirmed of each file. */
  readonly acked?: AckedFiles | undefined
}

export interface AckedFiles {
  /** Bytes of each file (by manifest index) the receiver confirmed; the sender fills it in. */
  readonly bytes: Map<number, number>
  /** Runs after each change to `bytes`. */
  readonly onChange: Effect.Effect<void>
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

/** Refuses a broken ResumeFrom list: the receiver hears why, as the sender's user does. */
const badResume = (channel: Channel, problem: string) => {
  const message = `protocol error: the receiver asked to resume ${problem}`
  return Effect.zipRight(
    Effect.ignore(sendFrame(channel, { _tag: "Error", message })),
    Effect.fail(new PeerFailed({ message })),
  )
}

/**
 * Waits for the receiver's answer to the manifest: its ResumeFrom list, if it holds some of the files
 * already, then Accept. Returns, per file index, the bytes the receiver holds (its size: verified).
 * Each file may be named once, so the list is at most as long as the manifest has files.
 */
const acceptance = (
  channel: Channel,
  nextFrame: Effect.Effect<Frames.Frame, PeerFailed>,
  manifest: Manifest.Manifest,
) =>
  Effect.gen(function* () {
    const offsets = new Map<number, number>()
    const changed = new Set(manifest.changed ?? [])
    while (true) {
      const reply = yield* nextFrame
      if (reply._tag === "Accept") return offsets
      if (reply._tag === "Reject")
        return yield* new PeerFailed({ message: `the receiver declined: ${reply.reason}` })
      if (reply._tag === "Error")
        return yield* new PeerFailed({ message: `the receiver failed: ${reply.message}` })
      if (reply._tag !== "ResumeFrom") return yield* unexpected(reply, "Accept")
      const { file, offset } = reply
      const entry = manifest.entries[file]
      if (entry?._tag !== "file") return yield* badResume(channel, `file ${file}, which is not in the list`)
      if (offsets.has(file)) return yield* badResume(channel, `${entry.path} twice`)
      if (offset > entry.size)
        return yield* badResume(channel, `${entry.path} at ${offset}, past its ${entry.size} bytes`)
      if (changed.has(file)) return yield* badResume(channel, `${entry.path}, which changed and comes whole`)
      offsets.set(file, offset)
    }
  })

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
  const offsets = yield* acceptance(channel, nextFrame, sources.manifest)

  const { progress } = options
  const hasher = yield* Hasher
  const verified = yield* Deferred.make<void, PeerFailed>()
  // Both sides count the bytes the receiver already holds as written and acknowledged.
  let acked = [...offsets.values()].reduce((sum, offset) => sum + offset, 0)
  progress.bytes = acked
  // After a drop, what an earlier connection sent past what the receiver kept goes again.
  progress.resent += Math.max(0, progress.sent - acked)
  const ackedFiles = options.acked
  for (const [index, offset] of offsets) ackedFiles?.bytes.set(index, offset)
  /** Files begun in this session and not yet fully acknowledged: where their new bytes start in the count. */
  const unconfirmed = new Map<
    number,
    { readonly start: number; readonly from: number; readonly size: number }
  >()
  const recordAcked = Effect.suspend(() => {
    if (ackedFiles === undefined) return Effect.void
    for (const [index, { start, from, size }] of unconfirmed) {
      const bytes = from + Math.min(size - from, Math.max(0, acked - start))
      ackedFiles.bytes.set(index, bytes)
      if (bytes === size) unconfirmed.delete(index)
    }
    return ackedFiles.onChange
  })
  let wake: (() => void) | undefined
  const ackLoop = Effect.gen(function* () {
    while (true) {
      const frame = yield* nextFrame
      if (frame._tag === "Ack") {
        acked = frame.bytes
        progress.bytes = acked
        wake?.()
        yield* recordAcked
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
  progress.sent = acked
  /** Waits until `run` more bytes fit in the window: a drop can lose at most the window's worth. */
  const roomInWindow = (run: number) =>
    Effect.async<void>((resume) => {
      wake = () => {
        if (progress.sent + run - acked <= AckWindowBytes) {
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

  /** Sends the file from byte `from` on; the bytes before it, which the receiver holds, are only hashed. */
  const sendFile = (index: number, entry: Manifest.Entry & { _tag: "file" }, source: Source, from: number) =>
    Effect.gen(function* () {
      progress.file = index
      progress.fileBytes = from
      unconfirmed.set(index, { start: progress.sent, from, size: entry.size })
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
      yield* Effect.tryPromise({ try: () => absorbPrefix(hasher, hash, handle, from), catch: cannotRead })
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
      let queued = from
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
        if (progress.sent + (end - start) - acked > AckWindowBytes) yield* roomInWindow(end - start)
        yield* channel.send(
          ...(payloadKey === undefined
            ? frames
            : payloads.map((p, i) => Payload.sealChunk(payloadKey, index, start + i * options.chunkSize, p))),
        )
        progress.sent += end - start
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
    unconfirmed.delete(index)
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
    const from = offsets.get(index) ?? 0
    // The receiver verified it in an earlier session.
    if (entry._tag === "file" && source !== undefined && !(offsets.has(index) && from === entry.size))
      yield* sendFile(index, entry, source, from).pipe(
        Effect.catchTag("Unreadable", ({ reason }) => unreadable(index, entry, source, reason)),
      )
  }
  yield* Deferred.await(verified).pipe(Effect.raceFirst(channel.closed))
  progress.bytes = progress.totalBytes
})
